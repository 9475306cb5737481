package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// managedPlugin returns the directory holding the plugin binary that
// TestMain built, for libcni's plugin path.
func managedPlugin(t testing.TB) string {
	t.Helper()
	if pluginDir == "" {
		t.Fatal("the plugin binary was not built (TestMain)")
	}
	return pluginDir
}

// managedCNI is a managed attachment driven through libcni, as a runtime
// drives it.
type managedCNI struct {
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	rt      *libcni.RuntimeConf
	dataDir string
}

func newManagedCNI(t *testing.T, n *pastatest.NetNS, pasta string, hostPort uint16) *managedCNI {
	t.Helper()
	dataDir := pastatest.TempDir(t, "pp-data-")
	return newManagedCNIIn(t, dataDir, n, pasta, hostPort)
}

// newManagedCNIIn is newManagedCNI with a given data directory, for
// several attachments of one network.
func newManagedCNIIn(t *testing.T, dataDir string, n *pastatest.NetNS, pasta string, hostPort uint16) *managedCNI {
	t.Helper()
	return newManagedCNIWith(t, dataDir, n, pasta, hostPort, "")
}

// newManagedCNIWith is newManagedCNIIn with extra plugin keys ("" or
// `"key": value,`).
func newManagedCNIWith(t *testing.T, dataDir string, n *pastatest.NetNS, pasta string, hostPort uint16, extra string) *managedCNI {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "pp-managed",
	  "plugins": [{"type": "passt-portmap", "pasta": %q, "dataDir": %q, "timeout": "15s", %s
	               "capabilities": {"portMappings": true}}]}`, pasta, dataDir, extra)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	m := &managedCNI{
		cni:  libcni.NewCNIConfigWithCacheDir([]string{managedPlugin(t)}, filepath.Join(dataDir, "cache"), nil),
		list: list,
		rt: &libcni.RuntimeConf{
			ContainerID: "pp-" + strconv.Itoa(os.Getpid()) + "-" + n.Name,
			NetNS:       n.Path,
			IfName:      "eth0",
			CapabilityArgs: map[string]any{"portMappings": []map[string]any{
				{"hostPort": int(hostPort), "containerPort": 80, "protocol": "tcp"},
			}},
		},
		dataDir: dataDir,
	}
	t.Cleanup(func() {
		// DEL is idempotent: this also stops what a failing test left.
		ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
		defer cancel()
		if err := m.cni.DelNetworkList(ctx, m.list, m.rt); err != nil {
			t.Errorf("cleanup DEL: %v", err)
		}
	})
	return m
}

func (m *managedCNI) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), managedTimeout)
}

func (m *managedCNI) add(t *testing.T) *current.Result {
	t.Helper()
	ctx, cancel := m.ctx()
	defer cancel()
	r, err := m.cni.AddNetworkList(ctx, m.list, m.rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatalf("ADD result: %v", err)
	}
	return res
}

// forwarderDir returns the single managed forwarder directory under the
// data directory ("" when there is none).
func (m *managedCNI) forwarderDir(t *testing.T) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(m.dataDir, "forwarders", "*"))
	if err != nil {
		t.Fatal(err)
	}
	switch len(dirs) {
	case 0:
		return ""
	case 1:
		return dirs[0]
	}
	t.Fatalf("several forwarder directories: %v", dirs)
	return ""
}

// hostLoopbackServer serves a fixed reply on the host's loopback and
// returns its port.
func hostLoopbackServer(t *testing.T, reply string) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// askFromNetns connects from inside n to dst and returns the reply.
func askFromNetns(n *pastatest.NetNS, dst string) (string, error) {
	var got []byte
	err := n.Do(func() error {
		c, err := net.DialTimeout("tcp", dst, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	return string(got), err
}

// TestManagedCNI: through libcni, with nothing started by hand, a managed
// ADD on a bare namespace gives the container a network (described in the
// result), outbound connectivity to the host's loopback through the
// address mapHostLoopback names, and inbound forwarding of its mapped port; CHECK passes; a
// crashed pasta is reported by CHECK (104) and replaced by the next ADD;
// DEL leaves no pasta, socket or PID file.
func TestManagedCNI(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	n := pastatest.NewNetNS(t)
	hostPort := pastatest.FreePort(t, "tcp")
	dataDir := pastatest.TempDir(t, "pp-data-")
	m := newManagedCNIWith(t, dataDir, n, pasta, hostPort, `"mapHostLoopback": "169.254.1.2",`)

	res := m.add(t)
	t.Logf("ADD result: %v", res)
	if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != n.Path {
		t.Fatalf("result interfaces %v, want eth0 in %s", res.Interfaces, n.Path)
	}
	var gw4 net.IP
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil && ip.Gateway != nil {
			gw4 = ip.Gateway
		}
	}
	if gw4 == nil {
		t.Fatalf("result has no IPv4 address with a gateway: %v", res.IPs)
	}

	dir := m.forwarderDir(t)
	if dir == "" {
		t.Fatal("ADD made no managed forwarder directory")
	}
	pid, ok, err := forwarder.Running(dir)
	if err != nil || !ok {
		t.Fatalf("managed forwarder after ADD: running=%v err=%v", ok, err)
	}

	// Outbound: mapHostLoopback's address is the host's loopback (closed
	// without it: TestIsolation*).
	port := hostLoopbackServer(t, "host loopback")
	dst := net.JoinHostPort("169.254.1.2", strconv.Itoa(port))
	if got, err := askFromNetns(n, dst); err != nil || got != "host loopback" {
		t.Fatalf("from the container to %s: %q, %v", dst, got, err)
	}

	// Inbound: the mapped port reaches the container.
	pastatest.ServeTCP(t, n, ":80", "container")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", hostPort), "container")

	ctx, cancel := m.ctx()
	defer cancel()
	if err := m.cni.CheckNetworkList(ctx, m.list, m.rt); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}

	// A second ADD reuses the forwarder.
	m.add(t)
	if again, ok, _ := forwarder.Running(dir); !ok || again != pid {
		t.Fatalf("second ADD: forwarder %d (running %v), want the same %d", again, ok, pid)
	}

	// Crash: CHECK says so, with code 104.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	err = m.cni.CheckNetworkList(ctx, m.list, m.rt)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 104 {
		t.Fatalf("CHECK after the forwarder crashed = %v, want CNI error 104", err)
	}
	t.Logf("CHECK after the crash: %v", err)

	// The next ADD replaces it, with the mapping.
	m.add(t)
	newPID, ok, err := forwarder.Running(dir)
	if err != nil || !ok || newPID == pid {
		t.Fatalf("ADD after the crash: forwarder %d running=%v err=%v, want a new one", newPID, ok, err)
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", hostPort), "container")
	if err := m.cni.CheckNetworkList(ctx, m.list, m.rt); err != nil {
		t.Fatalf("CHECK after the replacing ADD: %v", err)
	}

	// DEL: nothing left.
	inst := forwarder.Paths(dir)
	if err := m.cni.DelNetworkList(ctx, m.list, m.rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	waitGone(t, newPID)
	if pids := processesWith(t, inst.Socket); len(pids) != 0 {
		t.Errorf("processes naming %s after DEL: %v", inst.Socket, pids)
	}
	assertNoFile(t, inst.Socket, inst.PIDFile)
	if err := m.cni.DelNetworkList(ctx, m.list, m.rt); err != nil {
		t.Errorf("second DEL: %v", err)
	}
}

// TestManagedCNIChainedRefused: in a namespace another plugin already
// configured, a managed ADD refuses (code 7) and starts nothing.
func TestManagedCNIChainedRefused(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	n := pastatest.NewNetNS(t)
	n.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	m := newManagedCNI(t, n, pasta, pastatest.FreePort(t, "tcp"))
	ctx, cancel := m.ctx()
	defer cancel()
	_, err := m.cni.AddNetworkList(ctx, m.list, m.rt)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 7 {
		t.Fatalf("ADD in a configured namespace = %v, want CNI error 7", err)
	}
	if dir := m.forwarderDir(t); dir != "" {
		if _, ok, _ := forwarder.Running(dir); ok {
			t.Fatalf("a forwarder runs in %s after a refused ADD", dir)
		}
	}
}

// TestManagedCNIStatus: STATUS passes with the real pasta and fails with
// code 50 when the configured binary is missing.
func TestManagedCNIStatus(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	n := pastatest.NewNetNS(t)
	m := newManagedCNI(t, n, pasta, pastatest.FreePort(t, "tcp"))
	ctx, cancel := m.ctx()
	defer cancel()
	if err := m.cni.GetStatusNetworkList(ctx, m.list); err != nil {
		t.Fatalf("STATUS with %s: %v", pasta, err)
	}
	bad := newManagedCNI(t, n, "/nonexistent/pasta", pastatest.FreePort(t, "tcp"))
	err := bad.cni.GetStatusNetworkList(ctx, bad.list)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 50 {
		t.Fatalf("STATUS with a missing pasta = %v, want CNI error 50", err)
	}
}

// TestManagedCNIGC: GC stops the managed forwarder of every attachment
// not listed as valid, and only those.
func TestManagedCNIGC(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	dataDir := pastatest.TempDir(t, "pp-data-")
	keep := newManagedCNIIn(t, dataDir, pastatest.NewNetNS(t), pasta, pastatest.FreePort(t, "tcp"))
	stale := newManagedCNIIn(t, dataDir, pastatest.NewNetNS(t), pasta, pastatest.FreePort(t, "tcp"))
	keep.add(t)
	keepDir := keep.onlyNewDir(t, "")
	stale.add(t)
	staleDir := stale.onlyNewDir(t, keepDir)
	stalePID, ok, err := forwarder.Running(staleDir)
	if err != nil || !ok {
		t.Fatalf("stale attachment's forwarder: running=%v err=%v", ok, err)
	}

	ctx, cancel := keep.ctx()
	defer cancel()
	err = keep.cni.GCNetworkList(ctx, keep.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
		{ContainerID: keep.rt.ContainerID, IfName: keep.rt.IfName},
	}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	waitGone(t, stalePID)
	inst := forwarder.Paths(staleDir)
	assertNoFile(t, inst.Socket, inst.PIDFile)
	if _, ok, err := forwarder.Running(keepDir); err != nil || !ok {
		t.Fatalf("GC stopped the valid attachment's forwarder: running=%v err=%v", ok, err)
	}
	if err := keep.cni.CheckNetworkList(ctx, keep.list, keep.rt); err != nil {
		t.Fatalf("CHECK of the valid attachment after GC: %v", err)
	}
}

// onlyNewDir returns the one forwarder directory under the data directory
// other than except.
func (m *managedCNI) onlyNewDir(t *testing.T, except string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(m.dataDir, "forwarders", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, d := range dirs {
		if d != except {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("forwarder directories besides %q: %v, want one", except, found)
	}
	return found[0]
}
