// Package podman_test drives the plugin through the real Podman 4.3.1
// (Debian 12: CNI backend, runc, rootful), each test with its own
// configuration (CONTAINERS_CONF), storage and CNI directories, so that
// nothing under /etc or /var/lib/containers is touched: containers with
// published TCP and UDP ports on every host address, a port range,
// restart, stop and rm, two containers on one network, and what the user
// is told when Podman's own port reservation is on.
package podman_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// image is the name of the test image in each test's storage.
const image = "localhost/passt-portmap-test:latest"

// podman is one private Podman set-up.
type podman struct {
	t         testing.TB
	dir       string
	conf      string
	pluginDir string
	dataDir   string
	netDir    string
}

// config is what goes into a private containers.conf.
type config struct {
	reservation bool // leave Podman's default port reservation on
}

// newPodman makes a private Podman: its containers.conf, storage, run
// and tmp directories, a CNI network directory, and the test image
// imported. Everything it started is removed when the test ends.
func newPodman(t testing.TB, c config) *podman {
	t.Helper()
	runtimetest.Require(t, "podman", "conmon", "runc")
	dir := runtimetest.ShortDir(t, "pm-")
	p := &podman{t: t, dir: dir, conf: filepath.Join(dir, "containers.conf"), pluginDir: runtimetest.PluginDir(t),
		dataDir: filepath.Join(dir, "data"), netDir: filepath.Join(dir, "net.d")}
	if err := os.MkdirAll(p.netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	engine := "enable_port_reservation = false\n"
	if c.reservation {
		engine = "# enable_port_reservation: Podman's default (true)\n"
	}
	conf := fmt.Sprintf(`[network]
network_backend = "cni"
cni_plugin_dirs = [%q, "/usr/lib/cni"]
network_config_dir = %q

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
%s`, p.pluginDir, p.netDir, filepath.Join(dir, "events.log"), engine)
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Containers first (their DEL stops the managed pastas), then
		// the storage.
		if out, err := p.run("rm", "--all", "--force", "--time", "0"); err != nil {
			t.Errorf("cleanup: podman rm: %v: %s", err, out)
		}
		if out, err := p.run("system", "reset", "--force"); err != nil {
			t.Errorf("cleanup: podman system reset: %v: %s", err, out)
		}
	})
	root := filepath.Join(dir, "rootfs")
	runtimetest.Rootfs(t, root)
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	p.must("import", "--quiet", tarball, image)
	return p
}

// run runs podman with the private configuration and directories.
func (p *podman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	full := append([]string{"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "tmp")}, args...)
	cmd := exec.CommandContext(ctx, "podman", full...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// network writes a CNI network of the given plugins (JSON objects).
func (p *podman) network(name string, plugins ...string) {
	p.t.Helper()
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, strings.Join(plugins, ", "))
	if err := os.WriteFile(filepath.Join(p.netDir, name+".conflist"), []byte(conf), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// managed is the plugin's entry in a network: managed, with this set-up's
// data directory and the real pasta.
func (p *podman) managed() string {
	return fmt.Sprintf(`{"type": %q, "pasta": %q, "dataDir": %q, "timeout": "20s", "capabilities": {"portMappings": true}}`,
		runtimetest.PluginName, runtimetest.Pasta(p.t), p.dataDir)
}

// runArgs are the arguments of "podman run -d" for a test container.
func runArgs(name, network string, extra ...string) []string {
	args := []string{"run", "--detach", "--name", name, "--network", network, "--stop-signal", "KILL",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	args = append(args, extra...)
	return append(append(args, image), runtimetest.Command()...)
}
