package podman_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

func TestMain(m *testing.M) {
	os.Exit(runtimetest.Main(m, map[string]runtimetest.Sweeper{"pm-": sweepPodman, "pmrl-": sweepRootless}))
}

// sweepPodman undoes what a killed run left of a private Podman in dir.
func sweepPodman(dir string) error {
	p := &podman{dir: dir, conf: dir + "/containers.conf"}
	if _, err := os.Stat(p.conf); err != nil {
		return nil // killed before Podman ran
	}
	for _, args := range [][]string{{"rm", "--all", "--force", "--time", "0"}, {"system", "reset", "--force"}} {
		if out, err := p.run(args...); err != nil {
			return fmt.Errorf("podman %s: %w: %s", args[0], err, out)
		}
	}
	return nil
}
