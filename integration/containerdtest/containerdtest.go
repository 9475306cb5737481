// Package containerdtest runs Debian 12's containerd 1.6 for tests, the
// way a Kubernetes node runs it: its own configuration, with root, state,
// sockets and runc's root in one directory under /tmp; CNI plugins and
// configuration from directories the test chose; the CRI (k8s.io/cri-api)
// over gRPC. Optionally it runs inside a network namespace of its own that
// stands for the node (pods, hostPorts, the stream server and the image
// registry then live there and nowhere else), and pulls images from a
// local registry through containerd's per-registry host configuration.
//
// When the test ends, pods are stopped and removed first (their shims
// outlive containerd), then containerd is stopped, its mounts undone and
// its namespace deleted. Sweep undoes the same for a run that was killed.
package containerdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// DirPrefix is the prefix of the directories Start makes under /tmp; a
// package's TestMain passes Sweep for it to runtimetest.Main.
const DirPrefix = "ctd-"

// netnsPrefix names a node namespace after its directory
// (/tmp/ctd-123 -> pp-ctd-123), so that Sweep finds it.
const netnsPrefix = "pp-"

// Config says how to run containerd.
type Config struct {
	// PluginDir is the CNI bin_dir. It must hold "loopback": containerd
	// adds its own loopback network to every pod.
	PluginDir string
	// SandboxImage is the pause image of every pod.
	SandboxImage string
	// NodeNetNS runs containerd inside a new network namespace (named
	// after the directory, see NetNS) instead of the test's.
	NodeNetNS bool
	// Mirrors maps registry hosts (e.g. "registry.k8s.io") to the
	// registry that serves their images instead (e.g.
	// "http://127.0.0.1:5000"); every pull of those hosts goes there
	// and nowhere else.
	Mirrors map[string]string
}

// Containerd is one containerd started by a test.
type Containerd struct {
	Dir     string // everything of this containerd lives under it
	Sock    string // the gRPC socket of the CRI
	ConfDir string // the CNI conf_dir
	// NetNS is the node namespace's name under /run/netns ("" when
	// containerd runs in the test's namespace).
	NetNS  string
	RT     runtimeapi.RuntimeServiceClient
	Images runtimeapi.ImageServiceClient

	t    testing.TB
	cfg  Config
	cmd  *exec.Cmd
	conn *grpc.ClientConn
}

// StreamPort is the stream server's port (exec, attach, port-forward) in
// a node namespace, which holds nothing else; in the test's namespace a
// free port is taken instead.
const StreamPort = 10010

// New makes a containerd's directory (and its node namespace, with
// cfg.NodeNetNS) without starting it: the test puts its CNI
// configuration in ConfDir (SetNetwork), whose paths may lie under Dir,
// then calls Start.
func New(t testing.TB, cfg Config) *Containerd {
	t.Helper()
	runtimetest.Require(t, "containerd", "ctr", "runc", "containerd-shim-runc-v2", "nsenter", "ip")
	dir := runtimetest.ShortDir(t, DirPrefix)
	c := &Containerd{t: t, cfg: cfg, Dir: dir, Sock: filepath.Join(dir, "c.sock"), ConfDir: filepath.Join(dir, "net.d")}
	if err := os.MkdirAll(c.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeNetNS {
		c.NetNS = netnsName(dir)
		if err := makeNetNS(c.NetNS); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := deleteNetNS(c.NetNS); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	return c
}

// Start starts containerd and waits until its CRI reports the runtime
// and the network ready (so a CNI configuration must be in ConfDir).
// When the test ends, pods are stopped and removed first, then
// containerd is stopped and its mounts undone.
func (c *Containerd) Start(t testing.TB) {
	t.Helper()
	streamPort := StreamPort
	if c.NetNS == "" {
		streamPort = int(pastatest.FreePort(t, "tcp"))
	}
	hostsDir := ""
	if len(c.cfg.Mirrors) > 0 {
		hostsDir = filepath.Join(c.Dir, "certs.d")
		if err := writeHosts(hostsDir, c.cfg.Mirrors); err != nil {
			t.Fatal(err)
		}
	}
	confPath := filepath.Join(c.Dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(config(c.Dir, c.Sock, c.cfg, streamPort, hostsDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(c.Dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = c.Command("containerd", "--config", confPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	logf.Close()
	t.Cleanup(c.stop)

	c.conn, err = grpc.NewClient("unix://"+c.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c.RT = runtimeapi.NewRuntimeServiceClient(c.conn)
	c.Images = runtimeapi.NewImageServiceClient(c.conn)
	c.waitReady()
}

// config is containerd's configuration: everything under dir, the
// settings this machine needs (restrict_oom_score_adj: root here lacks
// CAP_SYS_RESOURCE; no AppArmor), cgroupfs, overlayfs.
func config(dir, sock string, cfg Config, streamPort int, hostsDir string) string {
	registry := ""
	if hostsDir != "" {
		registry = fmt.Sprintf("  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = %q\n", hostsDir)
	}
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "%[7]d"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
%[11]s  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[10]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, filepath.Join(dir, "t.sock"), filepath.Join(dir, "opt"),
		cfg.SandboxImage, streamPort, cfg.PluginDir, filepath.Join(dir, "net.d"), filepath.Join(dir, "runc"), registry)
}

// writeHosts writes one certs.d/HOST/hosts.toml per mirrored host. The
// mirror is the host's server too, not only a host tried first: with
// config_path, containerd falls back to the server after its hosts, and
// the upstream registry must never be asked.
func writeHosts(dir string, mirrors map[string]string) error {
	hosts := make([]string, 0, len(mirrors))
	for h := range mirrors {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		m := mirrors[h]
		if !strings.HasPrefix(m, "http://127.") && !strings.HasPrefix(m, "http://[::1]") {
			return fmt.Errorf("mirror %q of %s: only a registry on the loopback", m, h)
		}
		d := filepath.Join(dir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", m, m)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Command returns a command that runs in containerd's network namespace
// (the node's), entered with nsenter. Not `ip netns exec`: that also
// remounts /sys in a new mount namespace, and runc started from there
// finds no cgroup mount.
func (c *Containerd) Command(name string, args ...string) *exec.Cmd {
	return c.CommandContext(context.Background(), name, args...)
}

// CommandContext is Command with a context.
func (c *Containerd) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	if c.NetNS == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + filepath.Join("/run/netns", c.NetNS), "--", name}, args...)...)
}

// Dial connects to addr from containerd's network namespace (the node's):
// the socket is made inside it, so the node's loopback is reached.
func (c *Containerd) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if c.NetNS == "" {
		return d.DialContext(ctx, network, addr)
	}
	target, err := ns.GetNS(filepath.Join("/run/netns", c.NetNS))
	if err != nil {
		return nil, fmt.Errorf("node namespace %s: %w", c.NetNS, err)
	}
	defer target.Close()
	var conn net.Conn
	err = target.Do(func(ns.NetNS) error {
		var derr error
		conn, derr = d.DialContext(ctx, network, addr)
		return derr
	})
	return conn, err
}

// SetNetwork makes the network of name with the given plugins (JSON
// objects) the only configuration in the CNI directory; containerd
// watches it and reloads.
func (c *Containerd) SetNetwork(t testing.TB, name string, plugins ...string) {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(c.ConfDir, "*.conflist"))
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, strings.Join(plugins, ", "))
	tmp := filepath.Join(c.ConfDir, ".tmp")
	if err := os.WriteFile(tmp, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.ConfDir, "10-"+name+".conflist")); err != nil {
		t.Fatal(err)
	}
	for _, o := range old {
		if filepath.Base(o) != "10-"+name+".conflist" {
			if err := os.Remove(o); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitReady waits until the CRI reports the runtime and the network
// ready, or containerd exits.
func (c *Containerd) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(runtimetest.Timeout)
	var last error
	for time.Now().Before(deadline) {
		cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.RT.Status(cx, &runtimeapi.StatusRequest{})
		cancel()
		if err == nil {
			ready := 0
			for _, cond := range st.GetStatus().GetConditions() {
				if cond.Status && (cond.Type == runtimeapi.RuntimeReady || cond.Type == runtimeapi.NetworkReady) {
					ready++
				}
			}
			if ready == 2 {
				return
			}
			err = fmt.Errorf("conditions %v", st.GetStatus().GetConditions())
		}
		last = err
		if c.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("containerd's CRI not ready: %v\n%s", last, c.Log())
}

// Log returns the tail of containerd's log.
func (c *Containerd) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "containerd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Ctr runs ctr against this containerd in the CRI's namespace.
func (c *Containerd) Ctr(args ...string) (string, error) {
	cx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	out, err := exec.CommandContext(cx, "ctr", append([]string{"--address", c.Sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// StopPods stops and removes every pod sandbox, failing the test on an
// error.
func (c *Containerd) StopPods(t testing.TB) {
	t.Helper()
	cx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	pods, err := c.RT.ListPodSandbox(cx, &runtimeapi.ListPodSandboxRequest{})
	cancel()
	if err != nil {
		t.Errorf("list pods: %v", err)
		return
	}
	for _, p := range pods.GetItems() {
		cx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
		if _, err := c.RT.StopPodSandbox(cx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("stop pod %s: %v", p.Metadata.GetName(), err)
		}
		if _, err := c.RT.RemovePodSandbox(cx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("remove pod %s: %v", p.Metadata.GetName(), err)
		}
		cancel()
	}
}

// stop removes every pod, then stops containerd and undoes its mounts.
func (c *Containerd) stop() {
	if c.conn != nil {
		c.StopPods(c.t)
		c.conn.Close()
	}
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
	UnmountUnder(c.Dir, c.t.Logf)
}

// Sweep undoes what a killed run left of a containerd in dir: its
// containers (through runc, with its root in dir), then every process
// whose command line names dir (containerd, its shims, managed pastas, a
// registry), then its mounts and its node namespace.
func Sweep(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	runcRoot := filepath.Join(dir, "runc")
	if ents, err := os.ReadDir(runcRoot); err == nil {
		for _, ns := range ents {
			root := filepath.Join(runcRoot, ns.Name())
			out, err := exec.CommandContext(ctx, "runc", "--root", root, "list", "--quiet").Output()
			if err != nil {
				return fmt.Errorf("runc --root %s list: %w", root, err)
			}
			for _, id := range strings.Fields(string(out)) {
				if out, err := exec.CommandContext(ctx, "runc", "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
					return fmt.Errorf("runc delete %s: %w: %s", id, err, out)
				}
			}
		}
	}
	for _, pid := range runtimetest.ProcessesWith(dir + "/") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); len(runtimetest.ProcessesWith(dir+"/")) > 0; {
		if time.Now().After(deadline) {
			return fmt.Errorf("processes naming %s survive SIGKILL: %v", dir, runtimetest.ProcessesWith(dir+"/"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	UnmountUnder(dir, func(string, ...any) {})
	if _, err := os.Stat(filepath.Join("/run/netns", netnsName(dir))); err == nil {
		return deleteNetNS(netnsName(dir))
	}
	return nil
}

// UnmountUnder undoes every mount under dir (snapshots, namespaces, shm),
// deepest first.
func UnmountUnder(dir string, logf func(string, ...any)) {
	b, _ := os.ReadFile("/proc/self/mounts")
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			logf("cleanup: unmount %s: %v", mounts[i], err)
		}
	}
}

func netnsName(dir string) string { return netnsPrefix + filepath.Base(dir) }

func makeNetNS(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = deleteNetNS(name)
		return fmt.Errorf("ip -n %s link set lo up: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func deleteNetNS(name string) error {
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
