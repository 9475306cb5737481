package cni_test

import (
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/cni/modeltest"
)

// TestModelRealPasta runs the fault model against the real pasta and
// pesto, for a bounded number of steps: the faults the stand-in cannot
// show (pasta's own binding, its restart, pesto's encoding) in the same
// sequences.
func TestModelRealPasta(t *testing.T) {
	base := pastatest.FreePortRange(t, "tcp", modeltest.Ports)
	steps := modeltest.Steps(t, 150)
	seeds := modeltest.Seeds(t, []uint64{101, 102, 103, 104})
	stats := modeltest.Stats{}
	for _, seed := range seeds {
		modeltest.Run(t, modeltest.Pasta(base), seed, steps, 90*time.Second, stats)
	}
	t.Logf("model: %d seeds x %d steps against the real pasta (%s); outcomes: %s", len(seeds), steps, pastatest.Version(t), stats)
}
