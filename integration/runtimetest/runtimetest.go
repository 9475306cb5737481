// Package runtimetest is the harness of the tests that drive the plugin
// through real container runtimes (Podman, containerd's CRI): the plugin
// built behind a timing shim, a busybox container root with a web server
// per port and a UDP echo, loopback clients, and checks that nothing of a
// container is left behind.
//
// Every container of these tests runs
//
//	sh -c 'for p in PORTS; do httpd -p $p -h /www/$p; done; exec udpecho UDPPORTS'
//
// (Command): busybox's httpd serves "page PORT" on each TCP port, and
// udpecho answers each UDP datagram on each UDP port with "PORT:" and the
// datagram, so a reply names the container port it came from.
package runtimetest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
)

// PluginName is the plugin's binary name, which the CNI configurations use.
const PluginName = "passt-portmap"

// Timeout bounds each runtime command and each wait of these tests.
const Timeout = 60 * time.Second

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// moduleRoot returns the directory of go.mod, from this file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// build compiles the plugin, the timing shim and the servers of the test
// images (udpecho, critestweb) once per test binary, without cgo so that
// the servers run in an image that holds nothing else.
func build() (string, error) {
	buildOnce.Do(func() {
		dir, err := OwnedDir("rt-build-")
		if err != nil {
			buildErr = err
			return
		}
		for name, pkg := range map[string]string{
			PluginName:   "./plugins/passt-portmap",
			"cnitime":    "./integration/cmd/cnitime",
			"udpecho":    "./integration/cmd/udpecho",
			"critestweb": "./integration/cmd/critestweb",
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), pkg)
			cmd.Dir = moduleRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v: %s", pkg, err, out)
				return
			}
		}
		buildDir = dir
	})
	return buildDir, buildErr
}

// Main runs the tests of a package (from its TestMain) and removes what
// the package's tests built, returning the exit code for os.Exit. First,
// each sweeper cleans the directories of its prefix (ShortDir's) that a
// killed run of the tests left behind.
func Main(m *testing.M, sweepers map[string]Sweeper) int {
	all := map[string]Sweeper{"rt-build-": nothing, "rt-bin-": nothing}
	for p, fn := range sweepers {
		all[p] = fn
	}
	Sweep(all)
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}

// ShortDir makes a directory under /tmp, removed when the test ends
// (socket paths inside must stay under 108 bytes).
func ShortDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := OwnedDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// PluginDir returns a new CNI plugin directory: the plugin behind the
// cnitime shim (see Timings), and links to the named binaries of
// /usr/lib/cni (e.g. "loopback", which containerd needs).
func PluginDir(t testing.TB, system ...string) string {
	t.Helper()
	src, err := build()
	if err != nil {
		t.Fatal(err)
	}
	dir := ShortDir(t, "rt-bin-")
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(src, "cnitime"), filepath.Join(dir, PluginName))
	copyFile(t, filepath.Join(src, PluginName), filepath.Join(dir, "real", PluginName))
	for _, name := range system {
		p := filepath.Join("/usr/lib/cni", name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CNI plugin %s: %v (Debian's containernetworking-plugins)", name, err)
		}
		copyFile(t, p, filepath.Join(dir, name))
	}
	return dir
}

// Plugin returns the plugin binary itself (static, without the timing
// shim), built once per test binary.
func Plugin(t testing.TB) string {
	t.Helper()
	return Binary(t, PluginName)
}

// Binary returns the path of a program build compiled: PluginName,
// "cnitime", "udpecho" or "critestweb".
func Binary(t testing.TB, name string) string {
	t.Helper()
	src, err := build()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(src, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no built program %s: %v", name, err)
	}
	return p
}

// TimePlugin puts the cnitime shim in front of plugin name of a PluginDir
// too (one of /usr/lib/cni's that PluginDir copied), so that Timings
// holds its runs.
func TimePlugin(t testing.TB, dir, name string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, "real", name)); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(dir, PluginName), filepath.Join(dir, name))
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// Pasta returns the real pasta (PASST_BIN_DIR), failing the test without it.
func Pasta(t testing.TB) string {
	t.Helper()
	pasta, _ := pastatest.Bins(t)
	return pasta
}

// Require fails the test when a program is missing: the runtime tests
// never skip.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the runtime tests run as root")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed (.ci/run installs it with apt): %v", p, err)
		}
	}
}

// Container ports served by every test container.
var (
	TCPPorts = []uint16{80, 8000, 8001, 8002}
	UDPPorts = []uint16{5353, 6000, 6001, 6002}
)

// Command is the container's command line (see the package comment).
func Command() []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf("for p in %s; do httpd -p $p -h /www/$p; done; exec udpecho %s",
		joinPorts(TCPPorts), joinPorts(UDPPorts))}
}

func joinPorts(ps []uint16) string {
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(int(p)))
	}
	return strings.Join(s, " ")
}

// Page is what the web server on container port p serves.
func Page(p uint16) string { return fmt.Sprintf("page %d\n", p) }

// Rootfs writes the container root into dir: a static busybox with the
// links the command uses, udpecho, and a page per TCP port.
func Rootfs(t testing.TB, dir string) {
	t.Helper()
	src, err := build()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox: %v (Debian's busybox-static)", err)
	}
	if err := Static(bb); err != nil {
		t.Fatalf("%v (install busybox-static)", err)
	}
	for _, d := range []string{"bin", "tmp", "proc", "sys", "dev", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bb, filepath.Join(dir, "bin", "busybox"))
	copyFile(t, filepath.Join(src, "udpecho"), filepath.Join(dir, "bin", "udpecho"))
	for _, l := range []string{"sh", "httpd", "sleep", "cat", "echo", "ip"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range TCPPorts {
		www := filepath.Join(dir, "www", strconv.Itoa(int(p)))
		if err := os.MkdirAll(www, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(Page(p)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{"etc/passwd": "root:x:0:0:root:/:/bin/sh\n", "etc/group": "root:x:0:\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Static fails unless the ELF file at path has no program interpreter:
// the image has no dynamic loader or C library.
func Static(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// Get fetches "/" over HTTP from addr (host:port on the loopback) and
// returns the body.
func Get(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	return GetVia(ctx, d.DialContext, addr)
}

// GetVia is Get with the connection made by dial (e.g. inside a network
// namespace that stands for a node: its loopback is the node's).
func GetVia(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) (string, error) {
	if err := loopback(addr); err != nil {
		return "", err
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<16))
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return "", fmt.Errorf("%s: not an HTTP response: %q", addr, b)
	}
	if status, _, _ := bytes.Cut(head, []byte("\r\n")); !bytes.Contains(status, []byte(" 200 ")) {
		return "", fmt.Errorf("%s: %s", addr, status)
	}
	return string(body), nil
}

func loopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: tests send traffic to loopback only", addr)
	}
	return nil
}

// Addr is host:port for an address and a port.
func Addr(ip string, port uint16) string { return pastatest.HostPort(ip, port) }

// MustGet fetches addr until it answers (up to Timeout: a container's
// server may still be starting) and fails the test unless the page is
// want. A wrong page fails at once.
func MustGet(t testing.TB, addr, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := Get(actx, addr)
		acancel()
		if err == nil {
			if got != want {
				t.Fatalf("GET %s: %q, want %q", addr, got, want)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s: %v; want %q", addr, err, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MustNotGet fails the test when addr serves want.
func MustNotGet(t testing.TB, addr, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if got, err := Get(ctx, addr); err == nil && got == want {
		t.Fatalf("GET %s answered %q, want no answer", addr, got)
	}
}

// MustEcho sends a datagram to addr until the echo comes back (up to
// Timeout) and fails the test unless it came from container port from.
func MustEcho(t testing.TB, addr string, from uint16) {
	t.Helper()
	pastatest.MustAnswer(t, "udp", addr, fmt.Sprintf("%d:ping", from))
}

// MustNotEcho fails the test when addr echoes as container port from.
func MustNotEcho(t testing.TB, addr string, from uint16) {
	t.Helper()
	pastatest.MustNotAnswer(t, "udp", addr, fmt.Sprintf("%d:ping", from))
}

// Timing is one plugin run that the cnitime shim logged.
type Timing struct {
	Command     string // CNI_COMMAND
	ContainerID string
	Status      int
	Took        time.Duration
}

// Timings reads the cnitime log of a PluginDir.
func Timings(pluginDir string) ([]Timing, error) {
	b, err := os.ReadFile(filepath.Join(pluginDir, "timing.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Timing
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		status, err1 := strconv.Atoi(f[2])
		us, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("timing.log line %q", line)
		}
		out = append(out, Timing{Command: f[0], ContainerID: f[1], Status: status, Took: time.Duration(us) * time.Microsecond})
	}
	return out, nil
}

// Median returns the median of ds (0 for none).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Durations returns how long the runs of command took, for the given
// container IDs (all when none is given), successful runs only.
func Durations(ts []Timing, command string, ids ...string) []time.Duration {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []time.Duration
	for _, tm := range ts {
		if tm.Command == command && tm.Status == 0 && (len(ids) == 0 || want[tm.ContainerID]) {
			out = append(out, tm.Took)
		}
	}
	return out
}

// ProcessesWith returns the PIDs of live processes whose command line
// contains s (a forwarder directory, for example).
func ProcessesWith(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// WaitNoProcess waits until no live process's command line contains s.
func WaitNoProcess(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		pids := ProcessesWith(s)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes naming %s still run: %v", s, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Entries returns the names in dir ("" entries for a missing dir).
func Entries(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

// NothingLeft fails the test when the data directory holds any record or
// forwarder directory, or any process names it (a managed pasta).
func NothingLeft(t testing.TB, dataDir string) {
	t.Helper()
	WaitNoProcess(t, dataDir)
	if fs := Entries(t, filepath.Join(dataDir, "forwarders")); len(fs) != 0 {
		t.Errorf("forwarder directories left in %s: %v", dataDir, fs)
	}
	recs, _ := filepath.Glob(filepath.Join(dataDir, "records", "*", "*.json"))
	if len(recs) != 0 {
		t.Errorf("records left: %v", recs)
	}
}

// NoListener fails the test when anything listens on one of the TCP
// ports or has one of the UDP ports bound, in the host's namespace.
func NoListener(t testing.TB, tcp, udp []uint16) {
	t.Helper()
	for _, c := range []struct {
		udp   bool
		ports []uint16
	}{{false, tcp}, {true, udp}} {
		for _, port := range c.ports {
			hs, err := procnet.PortHolders(c.udp, port)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) > 0 {
				t.Errorf("port %d (udp %v) still held: %v", port, c.udp, hs)
			}
		}
	}
}
