// Package podman5_test drives the plugin as a netavark driver through the
// real Podman 5.8 (Debian unstable's, with netavark 1.17, crun, conmon and
// passt), as a user would: `podman network create -d passt-portmap`,
// `podman run -p`, `podman port`, `network inspect`, restart, stop,
// start, rm, `network reload`, rootful with Podman's port reservation off
// and with its defaults, and rootless.
//
// Debian 12 has no Podman 5: it runs in a Debian unstable root made by
// scripts/sidroot.sh (PODMAN5_ROOT), on an overlay of the run's own, with
// the mounts a machine would have, in a mount namespace and a cgroup of
// the run's own (TestMain): nothing of it is left on the machine.
package podman5_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// podman runs Podman 5 in the root: as root, or as a user (rootless).
type podman struct {
	t testing.TB
	r *sidRoot
	u *rootlessUser // nil: rootful
}

// rootful is the root's Podman run by root.
func rootful(t testing.TB) *podman {
	t.Helper()
	r := root(t)
	r.installPlugin(t)
	p := &podman{t: t, r: r}
	p.importImage()
	return p
}

// importImage imports the test image into this Podman's storage, once.
func (p *podman) importImage() {
	p.t.Helper()
	if _, err := p.run("image", "exists", image); err == nil {
		return
	}
	p.must("import", "--quiet", p.r.imageTar(p.t), image)
}

// run runs podman with args.
func (p *podman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	if p.u != nil {
		return p.u.run(ctx, append([]string{"podman"}, args...)...)
	}
	return p.r.chroot(ctx, append([]string{"podman"}, args...)...)
}

func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// fail runs podman with args, fails the test if it succeeds, and returns
// its output.
func (p *podman) fail(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err == nil {
		p.t.Fatalf("podman %s succeeded, want a failure:\n%s", strings.Join(args, " "), out)
	}
	p.t.Logf("podman %s: %v:\n%s", strings.Join(args, " "), err, out)
	return out
}

// runArgs are the arguments of `podman run -d` of a test container on
// network: every container serves runtimetest's pages and UDP echo.
func (p *podman) runArgs(name, network string, extra ...string) []string {
	args := []string{"run", "--detach", "--name", name, "--network", network, "--stop-signal", "KILL",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	args = append(args, extra...)
	return append(append(args, image), runtimetest.Command()...)
}

// dataDir is the plugin's default data directory for this Podman, inside
// the root.
func (p *podman) dataDir() string {
	if p.u != nil {
		return fmt.Sprintf("/run/user/%d/passt-portmap", p.u.uid)
	}
	return "/var/lib/cni/passt-portmap"
}

// record is what the tests read of an ownership record.
type record struct {
	Managed bool   `json:"managed"`
	Socket  string `json:"socket"`
	Rules   []struct {
		Pif  string `json:"pif"`
		Rule string `json:"rule"`
	} `json:"rules"`
}

// records returns the ownership records of network, by file name.
func (p *podman) records(network string) map[string]record {
	p.t.Helper()
	files, _ := filepath.Glob(p.r.path(filepath.Join(p.dataDir(), "records", network, "*.json")))
	out := map[string]record{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			p.t.Fatal(err)
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			p.t.Fatalf("record %s: %v", f, err)
		}
		out[filepath.Base(f)] = rec
	}
	return out
}

// forwarders returns the PIDs of the plugin's pastas that run now: the
// run's processes whose command line names the data directory.
func (p *podman) forwarders() []int {
	var out []int
	for _, pid := range runtimetest.ProcessesWith(p.dataDir() + "/forwarders/") {
		if inRun(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// inRun reports whether process pid is in this run's cgroup or below it.
func inRun(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	self := "0::/" + filepath.Base(os.Getenv(runEnv))
	for _, l := range strings.Split(string(b), "\n") {
		if l == self || strings.HasPrefix(l, self+"/") {
			return true
		}
	}
	return false
}

// nothingLeft fails the test unless the plugin left nothing of network:
// no pasta of the run, no record, no forwarder directory, nothing
// listening on the ports.
func (p *podman) nothingLeft(network string, tcp, udp []uint16) {
	p.t.Helper()
	deadline := time.Now().Add(runtimetest.Timeout)
	for len(p.forwarders()) > 0 {
		if time.Now().After(deadline) {
			p.t.Fatalf("the plugin's pastas still run: %v", p.forwarders())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if recs := p.records(network); len(recs) != 0 {
		p.t.Errorf("records left of network %s: %v", network, recs)
	}
	if fs := runtimetest.Entries(p.t, p.r.path(filepath.Join(p.dataDir(), "forwarders"))); len(fs) != 0 {
		p.t.Errorf("forwarder directories left: %v", fs)
	}
	runtimetest.NoListener(p.t, tcp, udp)
}

// mustMention fails the test unless out says each of want.
func mustMention(t testing.TB, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, out)
		}
	}
}
