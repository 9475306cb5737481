package integration

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// TestChainedHostPorts: bridge + host-local + passt-portmap through
// libcni, as containerd runs the list. The pod's host ports, TCP and
// UDP, answer from the client machine at the node's IPv4 and IPv6
// addresses and from the node's 127.0.0.1 and ::1; hostIP limits a port
// to its address; a range forwards port by port. The pod's server sees
// the client's own address, and the side gateway's for the node's
// loopback. The ADD result is the bridge's. CHECK passes, then fails
// (104) once the side's route is gone; DEL leaves nothing, and
// containerd's second DEL without a namespace succeeds.
func TestChainedHostPorts(t *testing.T) {
	c := newChainNet(t)
	ports := pastatest.FreePorts(t, "tcp", 3)
	all, lo, udpNode := int(ports[0]), int(ports[1]), int(ports[2])
	rng := freeRange(t, c.node, 3)
	peerServer(t, c.pod, 80, "web")
	for k := range 3 {
		peerServer(t, c.pod, 9000+k, "range"+string(rune('0'+k)))
	}
	udpHits := pktinfoServer(t, c.pod, 5353, "dns")
	ms := []map[string]any{
		portMapping("tcp", all, 80, ""),
		portMapping("udp", all, 5353, ""),
		portMapping("tcp", lo, 80, "127.0.0.1"),
		portMapping("tcp", lo, 80, "::1"),
		portMapping("tcp", rng, 9000, ""), portMapping("tcp", rng+1, 9001, ""), portMapping("tcp", rng+2, 9002, ""),
		portMapping("udp", udpNode, 5353, chainNode4),
	}
	list := c.list(t, c.bridgePlugin(), c.plugin(""))
	rt := c.rt(ms)
	res := c.attach(t, list, rt)

	// The result is the bridge's: the pod's own address, no side.
	if len(res.IPs) != 2 || !strings.HasPrefix(res.IPs[0].Address.String(), "10.88.0.") || !strings.HasPrefix(res.IPs[1].Address.String(), "fd88::") {
		t.Errorf("ADD result IPs %v, want the bridge's 10.88.0.x and fd88::x", res.IPs)
	}
	for _, i := range res.Interfaces {
		if i.Name == "pasta0" {
			t.Errorf("the ADD result names the side interface: %v", res.Interfaces)
		}
	}

	// Every way in, and what the pod sees of the client.
	mustAsk(t, c.client, "tcp", hp(chainNode4, all), "web saw "+chainClient4)
	mustAsk(t, c.client, "tcp", hp(chainNode6, all), "web saw "+chainClient6)
	mustAsk(t, c.node, "tcp", hp("127.0.0.1", all), "web saw "+sidePasta4)
	mustAsk(t, c.node, "tcp", hp("::1", all), "web saw "+sidePasta6)
	mustAsk(t, c.node, "tcp", hp(chainNode4, all), "web saw "+chainNode4)
	mustAsk(t, c.client, "udp", hp(chainNode4, all), "dns saw "+chainClient4)
	mustAsk(t, c.client, "udp", hp(chainNode6, all), "dns saw "+chainClient6)
	mustAsk(t, c.node, "udp", hp("127.0.0.1", all), "dns saw "+sidePasta4)
	mustAsk(t, c.node, "udp", hp("::1", all), "dns saw "+sidePasta6)
	// hostIP: only there.
	mustAsk(t, c.node, "tcp", hp("127.0.0.1", lo), "web saw "+sidePasta4)
	mustAsk(t, c.node, "tcp", hp("::1", lo), "web saw "+sidePasta6)
	mustNotAsk(t, c.client, "tcp", hp(chainNode4, lo))
	mustNotAsk(t, c.client, "tcp", hp(chainNode6, lo))
	mustAsk(t, c.client, "udp", hp(chainNode4, udpNode), "dns saw "+chainClient4)
	mustNotAsk(t, c.node, "udp", hp("127.0.0.1", udpNode))
	mustNotAsk(t, c.client, "udp", hp(chainNode6, udpNode))
	// A range, port by port.
	for k := range 3 {
		mustAsk(t, c.client, "tcp", hp(chainNode4, rng+k), "range"+string(rune('0'+k))+" saw "+chainClient4)
		mustAsk(t, c.node, "tcp", hp("::1", rng+k), "range"+string(rune('0'+k))+" saw "+sidePasta6)
	}
	if udpHits.Load() == 0 {
		t.Error("the UDP server counted no datagram")
	}

	// The pod network still reaches the pod at its own address.
	pod4 := res.IPs[0].Address.IP.String()
	mustAsk(t, c.client, "tcp", hp(pod4, 80), "web saw "+chainClient4)
	mustAsk(t, c.node, "tcp", hp(pod4, 80), "web saw 10.88.0.1")

	if err := c.check(t, list, rt); err != nil {
		t.Fatalf("CHECK while attached: %v", err)
	}
	c.pod.IP(t, "-6", "route", "del", "default", "table", "20563")
	err := c.check(t, list, rt)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 104 || !strings.Contains(te.Error(), "routing table 20563 lacks the default route via fe80::1 dev pasta0") {
		t.Fatalf("CHECK with the side's IPv6 route gone: %v, want code 104 naming it", err)
	}

	dir := c.forwarderOf(t)
	c.del(t, list, rt)
	second := *rt
	second.NetNS = ""
	c.del(t, list, &second)
	if left := c.leftovers(t); len(left) != 0 {
		t.Errorf("left after DEL: %v", left)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("forwarder directory %s left", dir)
	}
	c.pastaGone(t)
	for _, p := range []int{all, lo, rng, rng + 1, rng + 2, udpNode} {
		for _, proto := range []string{"tcp", "udp"} {
			if err := canBind(c.node, proto, p); err != nil {
				t.Errorf("the node cannot bind %s port %d after DEL: %v", proto, p, err)
			}
		}
	}
	if rules := c.pod.IP(t, "-4", "rule") + c.pod.IP(t, "-6", "rule"); strings.Contains(rules, "20563") {
		t.Errorf("rules left in the pod:\n%s", rules)
	}
	if out := c.pod.IP(t, "link", "show"); strings.Contains(out, "pasta0") {
		t.Errorf("the side interface is left:\n%s", out)
	}
}

// TestChainedPodNetworkUntouched: the pod's addresses, routes of every
// table and rules are, byte for byte, what the bridge plugin made, before
// the plugin's ADD and after its DEL; while attached, the main tables
// (and so the default routes) are the bridge's.
func TestChainedPodNetworkUntouched(t *testing.T) {
	c, port, _, conf := bridgedPod(t)
	before := c.podState(t)
	mainBefore := c.podMain(t)

	if err := c.execPlugin(t, "ADD", c.pod.Path, conf); err != nil {
		c.logs(t)
		t.Fatalf("ADD: %v", err)
	}
	mustAsk(t, c.client, "tcp", hp(chainNode4, port), "web saw "+chainClient4)
	if got := c.podMain(t); got != mainBefore {
		t.Errorf("the pod's main tables changed while attached:\n%s\nwant\n%s", got, mainBefore)
	}
	rules := c.pod.IP(t, "-4", "rule") + c.pod.IP(t, "-6", "rule")
	if !strings.Contains(rules, "from 169.254.100.2 lookup 20563") || !strings.Contains(rules, "from fd41:e00e:44f8::2 lookup 20563") {
		t.Errorf("the side's rules are missing:\n%s", rules)
	}

	if err := c.execPlugin(t, "DEL", c.pod.Path, conf); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if after := c.podState(t); after != before {
		t.Errorf("the pod after DEL:\n%s\nwant, as the bridge left it:\n%s", after, before)
	}
	delete(conf, "prevResult")
	if err := c.execPlugin(t, "DEL", "", conf); err != nil {
		t.Errorf("second DEL without a namespace: %v", err)
	}
	c.nothingLeft(t, "DEL")
}

// TestChainedNodeBind: a pod listening on a port does not keep the node
// from binding it (the pod has a namespace of its own; pod addresses on
// the node, with pasta's "auto" forwarding, would exclude the two), while
// the pod's host port is forwarded.
func TestChainedNodeBind(t *testing.T) {
	c := newChainNet(t)
	ports := pastatest.FreePorts(t, "tcp", 2)
	hostPort, podPort := int(ports[0]), int(ports[1])
	peerServer(t, c.pod, 80, "web")
	peerServer(t, c.pod, podPort, "pod-only")
	pktinfoServer(t, c.pod, podPort, "pod-only")
	list := c.list(t, c.bridgePlugin(), c.plugin(""))
	rt := c.rt([]map[string]any{portMapping("tcp", hostPort, 80, "")})
	c.attach(t, list, rt)
	mustAsk(t, c.node, "tcp", hp("127.0.0.1", hostPort), "web saw "+sidePasta4)
	for _, proto := range []string{"tcp", "udp"} {
		if err := canBind(c.node, proto, podPort); err != nil {
			t.Errorf("the pod listens on %s %d, and a node service cannot bind it: %v", proto, podPort, err)
		}
	}
}

// TestChainedUDPReplySource documents the one thing a UDP server in a
// chained pod must do: answer from the address a datagram came to. A
// server that lets the kernel pick the source answers from the pod's own
// address, out of the pod's interface, and the client gets nothing; a
// server that answers from the side's address (IP_PKTINFO, as DNS servers
// do) is reached.
func TestChainedUDPReplySource(t *testing.T) {
	c := newChainNet(t)
	ports := pastatest.FreePorts(t, "udp", 2)
	plainPort, infoPort := int(ports[0]), int(ports[1])
	plain := pastatest.ServeUDP(t, c.pod, ":6000", "plain")
	pktinfoServer(t, c.pod, 6001, "pktinfo")
	list := c.list(t, c.bridgePlugin(), c.plugin(""))
	rt := c.rt([]map[string]any{portMapping("udp", plainPort, 6000, ""), portMapping("udp", infoPort, 6001, "")})
	c.attach(t, list, rt)
	mustAsk(t, c.client, "udp", hp(chainNode4, infoPort), "pktinfo saw "+chainClient4)
	mustNotAsk(t, c.client, "udp", hp(chainNode4, plainPort))
	if plain.Hits() == 0 {
		t.Error("the wildcard UDP server got no datagram: the request should reach it, only the reply is lost")
	}
}

// TestChainedForwarderKilled: a chained pasta killed behind the plugin's
// back takes its tap, the side's addresses and routes with it; CHECK says
// so (104), the plugin's next ADD (with the pod network's result, as a
// runtime that repairs the attachment sends it) starts a new one on the
// same side (its rules are the side's own, not a clash) and the host port
// answers again; DEL leaves nothing.
func TestChainedForwarderKilled(t *testing.T) {
	c := newChainNet(t)
	port := int(pastatest.FreePort(t, "tcp"))
	peerServer(t, c.pod, 80, "web")
	list := c.list(t, c.bridgePlugin(), c.plugin(""))
	rt := c.rt([]map[string]any{portMapping("tcp", port, 80, "")})
	res := c.attach(t, list, rt)
	mustAsk(t, c.client, "tcp", hp(chainNode4, port), "web saw "+chainClient4)
	dir := c.forwarderOf(t)
	pid, _, err := forwarder.Running(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok, _ := forwarder.Running(dir); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed pasta still runs")
		}
	}
	err = c.check(t, list, rt)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 104 {
		t.Fatalf("CHECK after the pasta was killed: %v, want 104", err)
	}
	t.Logf("CHECK: %v", err)
	conf := c.chainedConf(res, port, nil)
	if err := c.execPlugin(t, "ADD", c.pod.Path, conf); err != nil {
		c.logs(t)
		t.Fatalf("ADD after the pasta was killed: %v", err)
	}
	mustAsk(t, c.client, "tcp", hp(chainNode4, port), "web saw "+chainClient4)
	mustAsk(t, c.node, "tcp", hp("::1", port), "web saw "+sidePasta6)
	if err := c.check(t, list, rt); err != nil {
		t.Errorf("CHECK after the ADD that restarted it: %v", err)
	}
	if rules := c.pod.IP(t, "-4", "rule"); strings.Count(rules, "lookup 20563") != 1 {
		t.Errorf("the side's IPv4 rule is not there once:\n%s", rules)
	}
	c.del(t, list, rt)
	c.nothingLeft(t, "DEL")
}

// TestChainedSideClash: a pod network that uses the side's routing table
// is left alone: the ADD is refused (7) naming the key, nothing starts;
// with another table (sideTable) the pod gets its host port, and the pod
// network's route stays where it was.
func TestChainedSideClash(t *testing.T) {
	c, port, _, conf := bridgedPod(t)
	c.pod.IP(t, "route", "add", "10.77.0.0/16", "via", "10.88.0.1", "table", "20563")
	err := c.execPlugin(t, "ADD", c.pod.Path, conf)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 7 || !strings.Contains(te.Error(), "configuration key sideTable") ||
		!strings.Contains(te.Error(), "routing table 20563 holds a route of the pod's network: 10.77.0.0/16 via 10.88.0.1 dev eth0") {
		t.Fatalf("ADD beside a pod network that uses table 20563: %v, want 7 naming sideTable and the route", err)
	}
	c.nothingLeft(t, "the refused ADD")
	if err := c.execPlugin(t, "DEL", c.pod.Path, conf); err != nil {
		t.Fatalf("DEL after the refused ADD: %v", err)
	}

	conf["sideTable"] = 77
	if err := c.execPlugin(t, "ADD", c.pod.Path, conf); err != nil {
		t.Fatalf("ADD with sideTable 77: %v", err)
	}
	mustAsk(t, c.client, "tcp", hp(chainNode4, port), "web saw "+chainClient4)
	if table := c.pod.IP(t, "route", "show", "table", "77"); !strings.Contains(table, "default via 169.254.100.1 dev pasta0") {
		t.Errorf("table 77: %s", table)
	}
	if err := c.execPlugin(t, "DEL", c.pod.Path, conf); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if table := c.pod.IP(t, "route", "show", "table", "20563"); !strings.Contains(table, "10.77.0.0/16 via 10.88.0.1 dev eth0") {
		t.Errorf("the pod network's route in table 20563 is gone: %q", table)
	}
	if left := c.leftovers(t); len(left) != 0 {
		t.Errorf("left after DEL: %v", left)
	}
}

// TestChainedGCAndAllowChained: GC releases a chained attachment the
// runtime no longer lists as DEL does (the side's rules and routes, the
// pasta, the record: the pod as the bridge left it). Then, with
// allowChained, the plugin keeps the meaning the key had: pasta's own
// network as a second one (here on net1), no side interface.
func TestChainedGCAndAllowChained(t *testing.T) {
	c, port, res, conf := bridgedPod(t)
	before := c.podState(t)
	if err := c.execPlugin(t, "ADD", c.pod.Path, conf); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	mustAsk(t, c.node, "tcp", hp("127.0.0.1", port), "web saw "+sidePasta4)
	gc := map[string]any{"cniVersion": "1.1.0", "name": chainName, "type": "passt-portmap", "pasta": c.pasta,
		"dataDir": c.dir + "/data", "cni.dev/valid-attachments": []any{}}
	if err := c.execPlugin(t, "GC", "", gc); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if after := c.podState(t); after != before {
		t.Errorf("the pod after GC:\n%s\nwant\n%s", after, before)
	}
	c.nothingLeft(t, "GC")
	mustNotAsk(t, c.node, "tcp", hp("127.0.0.1", port))

	second := c.chainedConf(res, port, map[string]any{"allowChained": true, "pastaArgs": []string{"-I", "net1"}})
	if err := c.execPlugin(t, "ADD", c.pod.Path, second); err != nil {
		c.logs(t)
		t.Fatalf("ADD with allowChained: %v", err)
	}
	links := c.pod.IP(t, "-o", "link", "show")
	if !strings.Contains(links, " net1: ") || strings.Contains(links, "pasta0") {
		t.Errorf("with allowChained the pod has:\n%s\nwant pasta's net1 and no side interface", links)
	}
	if rules := c.pod.IP(t, "-4", "rule"); strings.Contains(rules, "20563") {
		t.Errorf("with allowChained the side's rule is there:\n%s", rules)
	}
	if err := c.execPlugin(t, "DEL", c.pod.Path, second); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	c.pastaGone(t)
}

// bridgedPod is a chain net whose pod serves "web" on port 80 and has the
// pod network (the bridge) alone attached, with conf the plugin's
// chained configuration after res, the bridge's result, that forwards
// the free host port port to 80.
func bridgedPod(t *testing.T) (c *chainNet, port int, res *current.Result, conf map[string]any) {
	t.Helper()
	c = newChainNet(t)
	port = int(pastatest.FreePort(t, "tcp"))
	peerServer(t, c.pod, 80, "web")
	res = c.attach(t, c.list(t, c.bridgePlugin()), c.rt(nil))
	return c, port, res, c.chainedConf(res, port, nil)
}
