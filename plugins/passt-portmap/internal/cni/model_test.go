package cni_test

import (
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/cni/modeltest"
)

// TestModelFaults runs the fault model (package modeltest) against
// ctltest: fixed seeds (and more with PPMODEL_SEEDS), each a sequence of
// operations and faults.
func TestModelFaults(t *testing.T) {
	base := pastatest.FreePortRange(t, "tcp", modeltest.Ports)
	steps := modeltest.Steps(t, 150)
	seeds := modeltest.Seeds(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8})
	stats := modeltest.Stats{}
	for _, seed := range seeds {
		modeltest.Run(t, modeltest.Ctltest(base), seed, steps, time.Minute, stats)
	}
	t.Logf("model: %d seeds x %d steps against ctltest; outcomes: %s", len(seeds), steps, stats)
}
