package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// managedTimeout bounds every forwarder call of these tests.
const managedTimeout = 15 * time.Second

// managedDir returns a short attachment directory (a UNIX socket path
// holds at most 107 bytes), removed when the test ends.
func managedDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(pastatest.TempDir(t, "pp-"), "att")
}

// managedConfig returns a forwarder config for a fresh bare namespace.
// When the test ends, the forwarder is stopped (and the test fails if
// that does not work) and the namespace deleted.
func managedConfig(t *testing.T) (forwarder.Config, *pastatest.NetNS) {
	t.Helper()
	pasta, _ := pastatest.Bins(t)
	n := pastatest.NewNetNS(t)
	cfg := forwarder.Config{
		Pasta:   pasta,
		NetNS:   n.Path,
		IfName:  "ctr0",
		Dir:     managedDir(t),
		Timeout: managedTimeout,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
		defer cancel()
		if err := forwarder.Stop(ctx, cfg.Dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if t.Failed() {
			dumpManagedLogs(t, cfg.Dir)
		}
	})
	return cfg, n
}

func dumpManagedLogs(t testing.TB, dir string) {
	inst := forwarder.Paths(dir)
	for _, p := range []string{inst.OutFile, inst.LogFile} {
		if b, err := os.ReadFile(p); err == nil {
			t.Logf("%s:\n%s", p, b)
		}
	}
}

func ensure(t *testing.T, cfg forwarder.Config) *forwarder.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	inst, err := forwarder.Ensure(ctx, cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return inst
}

// mustHello fails the test unless the control socket sends a version 2
// hello.
func mustHello(t *testing.T, socket string) {
	t.Helper()
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	h, err := wire.ReadHello(c)
	if err != nil {
		t.Fatalf("hello from %s: %v", socket, err)
	}
	if err := h.Check(); err != nil {
		t.Fatalf("hello from %s: %v", socket, err)
	}
}

// processesWith returns the PIDs of live processes whose command line
// holds arg.
func processesWith(t *testing.T, arg string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), arg) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone waits until no process of pid exists any more (or it is a
// zombie): pasta is a daemon, init reaps it.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// Gone, or a zombie: an exiting process's command line is empty
		// before its files (pasta's tap device) are closed, a zombie's
		// files are closed.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); err == nil && i >= 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d still runs", pid)
}

func assertNoFile(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (stat: %v)", p, err)
		}
	}
}

// TestManagedEnsureStartsAndReuses: Ensure on a bare namespace starts
// pasta whose control socket answers; a second Ensure reuses it.
func TestManagedEnsureStartsAndReuses(t *testing.T) {
	cfg, _ := managedConfig(t)
	inst := ensure(t, cfg)
	if !inst.Started || inst.PID <= 0 {
		t.Fatalf("first Ensure: Started=%v PID=%d, want a started pasta", inst.Started, inst.PID)
	}
	mustHello(t, inst.Socket)
	if want := forwarder.Paths(cfg.Dir); inst.Socket != want.Socket || inst.PIDFile != want.PIDFile {
		t.Errorf("paths %+v, want those of Paths: %+v", inst, want)
	}
	pid, ok, err := forwarder.Running(cfg.Dir)
	if err != nil || !ok || pid != inst.PID {
		t.Fatalf("Running = %d, %v, %v; want %d, true, nil", pid, ok, err, inst.PID)
	}
	// The process really is a pasta with our socket, and only one.
	if pids := processesWith(t, inst.Socket); !slices.Equal(pids, []int{inst.PID}) {
		t.Errorf("processes naming %s: %v, want [%d]", inst.Socket, pids, inst.PID)
	}

	again := ensure(t, cfg)
	if again.Started || again.PID != inst.PID {
		t.Errorf("second Ensure: Started=%v PID=%d, want reuse of %d", again.Started, again.PID, inst.PID)
	}
	if pids := processesWith(t, inst.Socket); len(pids) != 1 {
		t.Errorf("after a second Ensure, processes naming %s: %v, want one", inst.Socket, pids)
	}
}

// TestManagedDoesNotHoldCallersOutput runs Ensure in a child process whose
// standard output and error are a pipe, as a runtime runs a plugin, and
// reads that pipe to its end: a pasta that inherited it would keep it open
// and the read would hang.
func TestManagedDoesNotHoldCallersOutput(t *testing.T) {
	if os.Getenv("H5_ENSURE_CHILD") != "" {
		return // the child's work is done in TestManagedHelperEnsure
	}
	cfg, _ := managedConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestManagedHelperEnsure$", "-test.count=1")
	cmd.Env = append(os.Environ(), "H5_ENSURE_CHILD="+mustJSON(t, cfg))
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() { b, err := io.ReadAll(pr); done <- read{b, err} }()
	var out []byte
	select {
	case r := <-done:
		out = r.b
	case <-time.After(managedTimeout):
		_ = cmd.Process.Kill()
		pr.Close()
		t.Fatalf("the caller's output pipe stayed open after Ensure returned: something holds it")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("ENSURED ")) {
		t.Fatalf("child did not start pasta:\n%s", out)
	}
	pid, ok, err := forwarder.Running(cfg.Dir)
	if err != nil || !ok {
		t.Fatalf("Running after the child's Ensure: %d, %v, %v", pid, ok, err)
	}
	for _, fd := range []int{0, 1, 2} {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if err != nil {
			t.Fatalf("fd %d of pasta: %v", fd, err)
		}
		if link != "/dev/null" {
			t.Errorf("fd %d of pasta links to %s, want /dev/null", fd, link)
		}
	}
	mustHello(t, forwarder.Paths(cfg.Dir).Socket)
}

// TestManagedHelperEnsure is the child of TestManagedDoesNotHoldCallersOutput.
func TestManagedHelperEnsure(t *testing.T) {
	js := os.Getenv("H5_ENSURE_CHILD")
	if js == "" {
		return // only meaningful as the child process
	}
	var cfg forwarder.Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		t.Fatal(err)
	}
	inst := ensure(t, cfg)
	fmt.Printf("ENSURED %d\n", inst.PID)
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ipJSON runs `ip -j -n NS ARGS...` and decodes its output.
func ipJSON(t *testing.T, n *pastatest.NetNS, v any, args ...string) {
	t.Helper()
	full := append([]string{"-j", "-n", n.Name}, args...)
	out, err := exec.Command("ip", full...).Output()
	if err != nil {
		t.Fatalf("ip %s: %v", strings.Join(full, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

// TestManagedReadNetwork: the network read back describes what `ip` sees
// in the namespace, and the DNS pasta announced.
func TestManagedReadNetwork(t *testing.T) {
	cfg, n := managedConfig(t)
	ensure(t, cfg)
	res, err := forwarder.ReadNetwork(cfg)
	if err != nil {
		t.Fatalf("ReadNetwork: %v", err)
	}
	t.Logf("result: %s", mustJSON(t, res))

	var links []struct {
		IfName   string `json:"ifname"`
		Address  string `json:"address"`
		MTU      int    `json:"mtu"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	ipJSON(t, n, &links, "addr", "show", "dev", "ctr0")
	if len(links) != 1 {
		t.Fatalf("ip addr show dev ctr0: %d links", len(links))
	}
	iface := res.Interface
	if iface.Name != "ctr0" || iface.MAC != links[0].Address || iface.Sandbox != cfg.NetNS || iface.MTU != links[0].MTU {
		t.Errorf("interface %+v, want name ctr0, MAC %s, MTU %d, sandbox %s", iface, links[0].Address, links[0].MTU, cfg.NetNS)
	}

	var want []string
	for _, a := range links[0].AddrInfo {
		if a.Scope == "global" {
			want = append(want, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
		}
	}
	var got []string
	for _, ad := range res.Addresses {
		p, _ := netip.ParsePrefix(ad.Prefix.String())
		got = append(got, fmt.Sprintf("%s/%d", p.Addr(), p.Bits()))
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("addresses %v, want the global ones ip shows: %v", got, want)
	}

	var defaults []struct {
		Gateway string `json:"gateway"`
	}
	ipJSON(t, n, &defaults, "-4", "route", "show", "default")
	var defaults6 []struct {
		Gateway string `json:"gateway"`
	}
	ipJSON(t, n, &defaults6, "-6", "route", "show", "default")
	defaults = append(defaults, defaults6...)
	if len(defaults) == 0 {
		t.Fatal("pasta set no default route in the namespace")
	}
	for _, d := range defaults {
		gw := net.ParseIP(d.Gateway)
		if !slices.ContainsFunc(res.Routes, func(r forwarder.Route) bool {
			ones, _ := r.Dst.Mask.Size()
			return ones == 0 && r.Gateway.Equal(gw)
		}) {
			t.Errorf("default route via %s missing from the network's routes", d.Gateway)
		}
		if !slices.ContainsFunc(res.Addresses, func(a forwarder.Address) bool { return a.Gateway.Equal(gw) }) {
			t.Errorf("no address of the network has gateway %s", d.Gateway)
		}
	}

	// DNS: every nameserver of the host's resolv.conf that pasta can
	// offer as is (not loopback) appears.
	for _, ns := range hostNameservers(t) {
		a, err := netip.ParseAddr(ns)
		if err != nil || a.IsLoopback() {
			continue
		}
		if !slices.Contains(res.DNS.Nameservers, a.String()) {
			t.Errorf("nameserver %s of /etc/resolv.conf missing from the result's DNS %v", ns, res.DNS.Nameservers)
		}
	}
}

func hostNameservers(t *testing.T) []string {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "nameserver" {
			ns = append(ns, strings.Split(fs[1], "%")[0])
		}
	}
	return ns
}

// TestManagedOutboundToHostLoopback: with MapHostLoopback, its addresses
// reach a server on the host's loopback from inside the namespace, over
// IPv4 and IPv6 (closed by default: TestIsolation*).
func TestManagedOutboundToHostLoopback(t *testing.T) {
	cfg, n := managedConfig(t)
	cfg.MapHostLoopback = []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}
	ensure(t, cfg)
	for _, m := range cfg.MapHostLoopback {
		loop, netw := "127.0.0.1", "tcp4"
		if m.Is6() {
			loop, netw = "::1", "tcp6"
		}
		t.Run(netw, func(t *testing.T) {
			ln, err := net.Listen(netw, net.JoinHostPort(loop, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte("hello from the host's loopback"))
					c.Close()
				}
			}()
			port := ln.Addr().(*net.TCPAddr).Port
			dst := net.JoinHostPort(m.String(), strconv.Itoa(port))
			got, err := askFromNetns(n, dst)
			if err != nil {
				t.Fatalf("from the namespace to %s (host's %s): %v", dst, loop, err)
			}
			if got != "hello from the host's loopback" {
				t.Fatalf("from the namespace to %s: got %q", dst, got)
			}
		})
	}
}

// TestManagedInboundRule: a rule written to the managed pasta's socket
// forwards the host's loopback port into the namespace.
func TestManagedInboundRule(t *testing.T) {
	cfg, n := managedConfig(t)
	inst := ensure(t, cfg)
	_, pesto := pastatest.Bins(t)
	pastatest.ServeTCP(t, n, ":80", "inside")
	port := pastatest.FreePort(t, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	spec := fmt.Sprintf("127.0.0.1/%d:80", port)
	if out, err := exec.CommandContext(ctx, pesto, "-A", "-t", spec, inst.Socket).CombinedOutput(); err != nil {
		t.Fatalf("pesto -A -t %s: %v: %s", spec, err, out)
	}
	// pesto returns once it has sent the tables; pasta switches to them
	// after the connection closes, so the listener may come a moment later.
	eventuallyAnswers(t, pastatest.HostPort("127.0.0.1", port), "inside")
}

// eventuallyAnswers asks addr over TCP until it answers want, for up to
// five seconds.
func eventuallyAnswers(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tries := 1; ; tries++ {
		got, err := pastatest.AskTCP(context.Background(), addr)
		if err == nil && got == want {
			if tries > 1 {
				t.Logf("%s answered at try %d", addr, tries)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcp %s: got %q, %v; want %q", addr, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestManagedStop: Stop leaves no process, socket or PID file, and is
// idempotent.
func TestManagedStop(t *testing.T) {
	cfg, _ := managedConfig(t)
	inst := ensure(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	if err := forwarder.Stop(ctx, cfg.Dir); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitGone(t, inst.PID)
	if pids := processesWith(t, inst.Socket); len(pids) != 0 {
		t.Errorf("processes naming %s after Stop: %v", inst.Socket, pids)
	}
	assertNoFile(t, inst.Socket, inst.PIDFile)
	if pid, ok, err := forwarder.Running(cfg.Dir); ok || err != nil {
		t.Errorf("Running after Stop = %d, %v, %v", pid, ok, err)
	}
	if err := forwarder.Stop(ctx, cfg.Dir); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := forwarder.Stop(ctx, filepath.Join(cfg.Dir, "never-made")); err != nil {
		t.Errorf("Stop of a directory that never existed: %v", err)
	}
}

// TestManagedCrashReplaced: a pasta killed with SIGKILL is reported by
// Running and replaced by the next Ensure.
func TestManagedCrashReplaced(t *testing.T) {
	cfg, _ := managedConfig(t)
	inst := ensure(t, cfg)
	if err := syscall.Kill(inst.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, inst.PID)
	if pid, ok, err := forwarder.Running(cfg.Dir); ok || err != nil {
		t.Fatalf("Running after SIGKILL = %d, %v, %v; want not running, no error", pid, ok, err)
	}
	again := ensure(t, cfg)
	if !again.Started || again.PID == inst.PID {
		t.Fatalf("Ensure after a crash: Started=%v PID=%d (old %d), want a new pasta", again.Started, again.PID, inst.PID)
	}
	mustHello(t, again.Socket)
}

// TestManagedNetnsDeleted: pasta quits when its namespace is deleted;
// Running notices and Stop cleans up what it left.
func TestManagedNetnsDeleted(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	name := fmt.Sprintf("pp-del-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	})
	cfg := forwarder.Config{Pasta: pasta, NetNS: "/run/netns/" + name, Dir: managedDir(t), Timeout: managedTimeout}
	inst := ensure(t, cfg)
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	deleted = true
	waitGone(t, inst.PID)
	if _, ok, err := forwarder.Running(cfg.Dir); ok || err != nil {
		t.Fatalf("Running after the namespace went: ok=%v err=%v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	if err := forwarder.Stop(ctx, cfg.Dir); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertNoFile(t, inst.Socket, inst.PIDFile)
}

// TestManagedStartFailure: a namespace path that does not exist fails
// with pasta's own message, leaves no process, and within the timeout.
func TestManagedStartFailure(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	cfg := forwarder.Config{Pasta: pasta, NetNS: "/run/netns/pp-does-not-exist", Dir: managedDir(t), Timeout: managedTimeout}
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	inst, err := forwarder.Ensure(ctx, cfg)
	if err == nil {
		t.Fatalf("Ensure on a missing namespace succeeded: %+v", inst)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "pp-does-not-exist") || !strings.Contains(err.Error(), "pasta.out") {
		t.Errorf("error %q names neither the namespace nor pasta's output", err)
	}
	p := forwarder.Paths(cfg.Dir)
	if pids := processesWith(t, p.Socket); len(pids) != 0 {
		t.Errorf("processes naming %s after a failed start: %v", p.Socket, pids)
	}
	assertNoFile(t, p.Socket, p.PIDFile)
}

// TestManagedAttached: a bare namespace is not attached; one with pasta's
// interface, or another plugin's, is.
func TestManagedAttached(t *testing.T) {
	cfg, n := managedConfig(t)
	if att, err := forwarder.Attached(n.Path); err != nil || att {
		t.Fatalf("Attached(bare) = %v, %v; want false", att, err)
	}
	ensure(t, cfg)
	if att, err := forwarder.Attached(n.Path); err != nil || !att {
		t.Fatalf("Attached(with pasta) = %v, %v; want true", att, err)
	}
	other := pastatest.NewNetNS(t)
	other.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	if att, err := forwarder.Attached(other.Path); err != nil || !att {
		t.Fatalf("Attached(with a veth pair) = %v, %v; want true", att, err)
	}
	if _, err := forwarder.Attached("/run/netns/pp-does-not-exist"); err == nil {
		t.Fatal("Attached on a missing namespace: no error")
	}
}

// TestManagedCheckBinary: the real pasta passes; a missing one does not.
func TestManagedCheckBinary(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	if err := forwarder.CheckBinary(ctx, pasta); err != nil {
		t.Fatalf("CheckBinary(%s): %v", pasta, err)
	}
	if err := forwarder.CheckBinary(ctx, "/nonexistent/pasta"); err == nil {
		t.Fatal("CheckBinary of a missing binary: no error")
	}
}

// TestManagedPastaArgs: extra arguments reach pasta, and the result
// follows them: -I names the interface over IfName.
func TestManagedPastaArgs(t *testing.T) {
	cfg, n := managedConfig(t)
	cfg.Args = []string{"-I", "net1", "--mtu", "1400"}
	ensure(t, cfg)
	res, err := forwarder.ReadNetwork(cfg)
	if err != nil {
		t.Fatalf("ReadNetwork: %v", err)
	}
	if res.Interface.Name != "net1" {
		t.Fatalf("interface %+v, want net1", res.Interface)
	}
	if out := n.IP(t, "link", "show", "dev", "net1"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("net1 in the namespace: %s; want mtu 1400", out)
	}
	if res.Interface.MTU != 1400 {
		t.Errorf("network MTU %d, want 1400", res.Interface.MTU)
	}
}
