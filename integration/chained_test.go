package integration

import (
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
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/pktinfo"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// The chained tests stand up a Kubernetes node in namespaces: "node" runs
// the CNI plugins (libcni, the bridge and host-local plugins, the
// plugin, and so pasta) as containerd would; "client" is another machine
// on the node's network (and its gateway); the pod's namespace gets its
// network from Debian's bridge plugin (a veth on the node's bridge cni0,
// addresses from host-local, IPv4 and IPv6) and its host ports from the
// plugin chained after it. Every packet stays in these namespaces.
const (
	chainNode4   = "198.51.100.2"
	chainNode6   = "2001:db8:1::2"
	chainClient4 = "198.51.100.1"
	chainClient6 = "2001:db8:1::1"
	chainPodNet4 = "10.88.0.0/24"
	chainPodNet6 = "fd88::/64"
	// The side as the plugin sets it up by default: what the pod sees
	// of a client on the node's loopback.
	sidePasta4 = "169.254.100.1"
	sidePasta6 = "fe80::1"
	sidePod4   = "169.254.100.2"
	sidePod6   = "fd41:e00e:44f8::2"
	debianCNI  = "/usr/lib/cni"
	chainName  = "pp-chain"
)

// chainNet is a node, a client and one pod.
type chainNet struct {
	node, client, pod *pastatest.NetNS
	dir               string // data directories, libcni's cache
	pasta             string
	cni               *libcni.CNIConfig
	id                string // the pod's container ID
}

func newChainNet(t testing.TB) *chainNet {
	t.Helper()
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(debianCNI, p)); err != nil {
			t.Fatalf("Debian's %s plugin is missing (scripts/deps.sh installs containernetworking-plugins): %v", p, err)
		}
	}
	pasta, _ := pastatest.Bins(t)
	c := &chainNet{node: pastatest.NewNetNS(t), client: pastatest.NewNetNS(t), pod: pastatest.NewNetNS(t), pasta: pasta}
	dir := pastatest.TempDir(t, "pp-chain-")
	c.dir = dir
	c.id = "pp-" + c.pod.Name
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{managedPlugin(t), debianCNI}, filepath.Join(dir, "cache"), nil)

	c.node.IP(t, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", c.client.Name)
	for _, x := range []struct {
		n      *pastatest.NetNS
		a4, a6 string
	}{{c.node, chainNode4, chainNode6}, {c.client, chainClient4, chainClient6}} {
		x.n.IP(t, "addr", "add", x.a4+"/24", "dev", "eth0")
		x.n.IP(t, "addr", "add", x.a6+"/64", "dev", "eth0", "nodad")
		x.n.IP(t, "link", "set", "eth0", "up")
	}
	// The client is the node's gateway, and reaches the pod network
	// through the node, as another machine of a cluster would.
	c.node.IP(t, "route", "add", "default", "via", chainClient4)
	c.node.IP(t, "-6", "route", "add", "default", "via", chainClient6)
	c.client.IP(t, "route", "add", chainPodNet4, "via", chainNode4)
	c.client.IP(t, "-6", "route", "add", chainPodNet6, "via", chainNode6)
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if out, err := exec.Command("ip", "netns", "exec", c.node.Name, "sysctl", "-qw", s).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s in the node: %v: %s", s, err, out)
		}
	}
	return c
}

// bridgePlugin is the pod network's entry: Debian's bridge with
// host-local addresses of both families, as a kubeadm node's
// /etc/cni/net.d might hold.
func (c *chainNet) bridgePlugin() string {
	return fmt.Sprintf(`{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
	  "ipam": {"type": "host-local", "dataDir": %q,
	           "ranges": [[{"subnet": %q}], [{"subnet": %q}]],
	           "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}`, filepath.Join(c.dir, "ipam"), chainPodNet4, chainPodNet6)
}

// plugin is the plugin's entry, portmap's replacement, with extra keys
// ("" or `"key": value,`).
func (c *chainNet) plugin(extra string) string {
	return fmt.Sprintf(`{"type": "passt-portmap", "pasta": %q, "dataDir": %q, "timeout": "20s", %s "capabilities": {"portMappings": true}}`,
		c.pasta, filepath.Join(c.dir, "data"), extra)
}

// chainedConf is the plugin's configuration after the pod network's
// result res, as libcni builds it, with one TCP host port.
func (c *chainNet) chainedConf(res any, port int, extra map[string]any) map[string]any {
	conf := map[string]any{"cniVersion": "1.0.0", "name": chainName, "type": "passt-portmap", "pasta": c.pasta,
		"dataDir": c.dir + "/data", "timeout": "20s", "capabilities": map[string]any{"portMappings": true},
		"runtimeConfig": map[string]any{"portMappings": []map[string]any{portMapping("tcp", port, 80, "")}},
		"prevResult":    res}
	for k, v := range extra {
		conf[k] = v
	}
	return conf
}

func (c *chainNet) list(t testing.TB, plugins ...string) *libcni.NetworkConfigList {
	t.Helper()
	l, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, chainName, strings.Join(plugins, ", "))))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rt is the pod's runtime configuration, as containerd sends it: the
// mappings and the Kubernetes arguments.
func (c *chainNet) rt(ms []map[string]any) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.id, NetNS: c.pod.Path, IfName: "eth0",
		Args: c.k8sArgs(), CapabilityArgs: map[string]any{"portMappings": ms}}
}

// k8sArgs are the CNI_ARGS a CRI runtime sends for the pod.
func (c *chainNet) k8sArgs() [][2]string {
	return [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "pp"}, {"K8S_POD_NAME", c.pod.Name}}
}

func chainCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// inNode runs fn with the calling thread in the node's namespace, so that
// the plugins libcni runs (and the pasta they start) are the node's.
func (c *chainNet) inNode(t testing.TB, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := chainCtx()
	defer cancel()
	return c.node.Do(func() error { return fn(ctx) })
}

func (c *chainNet) add(t testing.TB, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *current.Result {
	t.Helper()
	var r types.Result
	err := c.inNode(t, func(ctx context.Context) (err error) { r, err = c.cni.AddNetworkList(ctx, l, rt); return err })
	if err != nil {
		c.logs(t)
		t.Fatalf("ADD: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// attach is the runtime's ADD of l for rt (see add), with its DEL at the
// end of the test.
func (c *chainNet) attach(t testing.TB, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *current.Result {
	t.Helper()
	t.Cleanup(func() {
		if err := c.inNode(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, l, rt) }); err != nil {
			t.Errorf("cleanup DEL: %v", err)
		}
	})
	return c.add(t, l, rt)
}

func (c *chainNet) del(t testing.TB, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) {
	t.Helper()
	if err := c.inNode(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, l, rt) }); err != nil {
		t.Fatalf("DEL (CNI_NETNS %q): %v", rt.NetNS, err)
	}
}

func (c *chainNet) check(t testing.TB, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	t.Helper()
	return c.inNode(t, func(ctx context.Context) error { return c.cni.CheckNetworkList(ctx, l, rt) })
}

// execPlugin runs the plugin alone, as libcni runs one entry of a list:
// conf is its configuration with runtimeConfig and prevResult in place.
func (c *chainNet) execPlugin(t testing.TB, verb, netns string, conf map[string]any) error {
	t.Helper()
	return c.execPluginNamed(t, "passt-portmap", verb, netns, conf)
}

// execPluginNamed is execPlugin for the named plugin (the one built for
// the tests, or Debian's).
func (c *chainNet) execPluginNamed(t testing.TB, name, verb, netns string, conf map[string]any) error {
	t.Helper()
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	args := &invoke.Args{Command: verb, ContainerID: c.id, NetNS: netns, IfName: "eth0",
		PluginArgs: c.k8sArgs(), Path: managedPlugin(t) + ":" + debianCNI}
	plugin, err := invoke.FindInPath(name, []string{managedPlugin(t), debianCNI})
	if err != nil {
		t.Fatal(err)
	}
	return c.inNode(t, func(ctx context.Context) error {
		if verb == "ADD" {
			_, err := invoke.ExecPluginWithResult(ctx, plugin, b, args, nil)
			return err
		}
		return invoke.ExecPluginWithoutResult(ctx, plugin, b, args, nil)
	})
}

// logs logs the chained pasta's output and log.
func (c *chainNet) logs(t testing.TB) {
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "data", "forwarders", "*"))
	for _, d := range dirs {
		dumpManagedLogs(t, d)
	}
}

// leftovers names what of the plugin is left under its data directory:
// forwarder directories, records (their lock files are not records).
func (c *chainNet) leftovers(t testing.TB) []string {
	t.Helper()
	var out []string
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "data", "forwarders", "*"))
	out = append(out, dirs...)
	recs, _ := filepath.Glob(filepath.Join(c.dir, "data", "records", "*", "*.json*"))
	return append(out, recs...)
}

// nothingLeft fails the test if, after the verb named by after, the
// plugin left anything under its data directory (leftovers) or a pasta
// for the pod runs (pastaGone).
func (c *chainNet) nothingLeft(t testing.TB, after string) {
	t.Helper()
	if left := c.leftovers(t); len(left) != 0 {
		t.Errorf("left after %s: %v", after, left)
	}
	c.pastaGone(t)
}

// podState is what the pod network made, as ip prints it: addresses,
// every routing table of both families, the rules.
func (c *chainNet) podState(t testing.TB) string {
	t.Helper()
	waitSettled(t, c.pod)
	return c.pod.IP(t, "-d", "address", "show") + c.pod.IP(t, "-4", "route", "show", "table", "all") +
		c.pod.IP(t, "-6", "route", "show", "table", "all") + c.pod.IP(t, "-4", "rule") + c.pod.IP(t, "-6", "rule")
}

// podMain is the pod's main tables and its default routes.
func (c *chainNet) podMain(t testing.TB) string {
	t.Helper()
	return c.pod.IP(t, "-4", "route", "show", "table", "main") + c.pod.IP(t, "-6", "route", "show", "table", "main")
}

// waitSettled waits until no IPv6 address of n is tentative (duplicate
// address detection changes the flags ip prints).
func waitSettled(t testing.TB, n *pastatest.NetNS) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.TrimSpace(n.IP(t, "-6", "address", "show", "tentative")) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 addresses still tentative in %s", n.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// portMapping is one portMappings entry as the CRI runtimes send it.
func portMapping(proto string, hostPort, containerPort int, hostIP string) map[string]any {
	m := map[string]any{"hostPort": hostPort, "containerPort": containerPort, "protocol": proto}
	if hostIP != "" {
		m["hostIP"] = hostIP
	}
	return m
}

// peerServer serves, on a TCP port of n (dual-stack), "TAG saw ADDR": the
// address the pod's server sees for its client.
func peerServer(t testing.TB, n *pastatest.NetNS, port int, tag string) *pastatest.Server {
	t.Helper()
	return pastatest.ServeTCPFunc(t, n, "tcp", ":"+strconv.Itoa(port), func(peer net.Addr) string {
		return tag + " saw " + peerOf(peer)
	})
}

func peerOf(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	return ap.Addr().Unmap().WithZone("").String()
}

// pktinfoServer is a UDP server on port of n that answers each datagram
// with "TAG saw ADDR" from the address the datagram was sent to (IP_PKTINFO,
// as DNS servers answer), one socket per family.
func pktinfoServer(t testing.TB, n *pastatest.NetNS, port int, tag string) *atomic.Int64 {
	t.Helper()
	hits := new(atomic.Int64)
	for _, network := range []string{"udp4", "udp6"} {
		pc, err := pktinfo.New(pastatest.ListenPacket(t, n, network, ":"+strconv.Itoa(port)), network)
		if err != nil {
			t.Fatal(err)
		}
		go pc.Serve(func(_ []byte, from net.Addr) []byte {
			hits.Add(1)
			return []byte(tag + " saw " + peerOf(from))
		})
	}
	return hits
}

// testDestination refuses a destination outside the namespaces these
// tests make: loopback, the node's network, the pod network and the side.
func testDestination(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	a := ap.Addr().Unmap().WithZone("")
	for _, p := range []string{"198.51.100.0/24", "2001:db8:1::/64", chainPodNet4, chainPodNet6, "169.254.100.0/30", "fd41:e00e:44f8::/64", "fe80::/64"} {
		if netip.MustParsePrefix(p).Contains(a) {
			return nil
		}
	}
	if a.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not an address of the test's namespaces", addr)
}

// askIn sends a request over proto to addr from inside n, with the local
// address from (or "" for the kernel's choice), and returns the reply.
// UDP is asked again every 200ms until the timeout.
func askIn(n *pastatest.NetNS, proto, from, addr string, timeout time.Duration) (string, error) {
	if err := testDestination(addr); err != nil {
		return "", err
	}
	var out string
	err := n.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if from != "" {
			var err error
			if proto == "tcp" {
				d.LocalAddr, err = net.ResolveTCPAddr("tcp", from)
			} else {
				d.LocalAddr, err = net.ResolveUDPAddr("udp", from)
			}
			if err != nil {
				return err
			}
		}
		conn, err := d.Dial(proto, addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		deadline := time.Now().Add(timeout)
		if proto == "tcp" {
			_ = conn.SetDeadline(deadline)
			b, err := io.ReadAll(conn)
			out = string(b)
			if err == nil && out == "" {
				err = errors.New("empty reply")
			}
			return err
		}
		buf := make([]byte, 2048)
		var last error
		for time.Now().Before(deadline) {
			if _, err := conn.Write([]byte("ping")); err != nil {
				last = err
			}
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			k, err := conn.Read(buf)
			if err == nil {
				out = string(buf[:k])
				return nil
			}
			last = err
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("no UDP reply within %v: %w", timeout, last)
	})
	return out, err
}

// mustAsk fails the test unless addr answers want over proto from n.
func mustAsk(t testing.TB, n *pastatest.NetNS, proto, addr, want string) {
	t.Helper()
	got, err := askIn(n, proto, "", addr, 5*time.Second)
	if err != nil || got != want {
		t.Errorf("%s %s from %s: %q, %v; want %q", proto, addr, n.Name, got, err, want)
	}
}

// mustNotAsk fails the test if addr answers over proto from n.
func mustNotAsk(t testing.TB, n *pastatest.NetNS, proto, addr string) {
	t.Helper()
	if got, err := askIn(n, proto, "", addr, time.Second); err == nil {
		t.Errorf("%s %s from %s answered %q; want no answer", proto, addr, n.Name, got)
	}
}

func hp(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }

// canBind reports whether a wildcard socket of proto can bind port in n
// (dual-stack, as a node service binds).
func canBind(n *pastatest.NetNS, proto string, port int) error {
	return n.Do(func() error { return pastatest.CanBind(proto, port) })
}

// pastaGone fails the test if a pasta for the pod still runs: the one of
// the forwarder directory, or any process whose command line names the
// pod's namespace.
func (c *chainNet) pastaGone(t testing.TB) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), c.pod.Path+"\x00") && strings.Contains(string(b), "--netns") {
			t.Errorf("a pasta for the pod still runs: %s: %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// forwarderOf returns the pod's chained forwarder directory.
func (c *chainNet) forwarderOf(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "data", "forwarders", "*"))
	if len(dirs) != 1 {
		t.Fatalf("forwarder directories: %v, want one", dirs)
	}
	if _, ok, err := forwarder.Running(dirs[0]); err != nil || !ok {
		t.Fatalf("the chained pasta in %s does not run: %v", dirs[0], err)
	}
	return dirs[0]
}

// freeRange returns the first of n consecutive ports that the node can
// bind for TCP and UDP now.
func freeRange(t testing.TB, n *pastatest.NetNS, count int) int {
	t.Helper()
	for try := 0; try < 100; try++ {
		first := int(pastatest.FreePort(t, "tcp"))
		if first+count > 65535 {
			continue
		}
		ok := true
		for p := first; p < first+count && ok; p++ {
			ok = canBind(n, "tcp", p) == nil && canBind(n, "udp", p) == nil
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports found", count)
	return 0
}
