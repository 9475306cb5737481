package integration

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// tcpCounter serves reply on TCP addr inside n and counts connections.
func tcpCounter(t *testing.T, n *pastatest.NetNS, network, addr, reply string) *atomic.Int64 {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	hits := new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	return hits
}

// udpCounter answers datagrams on UDP addr inside n and counts them.
func udpCounter(t *testing.T, n *pastatest.NetNS, network, addr, reply string) *atomic.Int64 {
	t.Helper()
	var pc net.PacketConn
	if err := n.Do(func() (err error) { pc, err = net.ListenPacket(network, addr); return err }); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	hits := new(atomic.Int64)
	go func() {
		buf := make([]byte, 2048)
		for {
			_, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			hits.Add(1)
			_, _ = pc.WriteTo([]byte(reply), src)
		}
	}()
	return hits
}

// TestChainedIsolation measures what a pod process can reach through the
// side interface: bound to the side's address, it connects out through
// pasta to other machines (the client), to the node's addresses and, by
// pasta's gateway, to the node's loopback, over TCP and UDP, IPv4 and
// IPv6. With the pod network alone, bridge and portmap give it none of
// these paths but the pod network's own; none may answer, and none of
// the servers may see a packet. The same servers answer the pod through
// its own network, and the node's loopback servers the node: the probes
// are sound.
func TestChainedIsolation(t *testing.T) {
	c := newChainNet(t)
	ports := pastatest.FreePorts(t, "tcp", 4)
	hostPort, clientPort, nodePort, loPort := int(ports[0]), int(ports[1]), int(ports[2]), int(ports[3])
	peerServer(t, c.pod, 80, "web")
	type server struct {
		where, proto string
		hits         *atomic.Int64
	}
	p := strconv.Itoa
	servers := map[string]server{
		"client tcp":   {"client", "tcp", tcpCounter(t, c.client, "tcp", ":"+p(clientPort), "client")},
		"client udp":   {"client", "udp", udpCounter(t, c.client, "udp", ":"+p(clientPort), "client")},
		"node tcp":     {"node", "tcp", tcpCounter(t, c.node, "tcp", ":"+p(nodePort), "node")},
		"node udp":     {"node", "udp", udpCounter(t, c.node, "udp", ":"+p(nodePort), "node")},
		"node lo4 tcp": {"node", "tcp", tcpCounter(t, c.node, "tcp4", "127.0.0.1:"+p(loPort), "node-lo")},
		"node lo4 udp": {"node", "udp", udpCounter(t, c.node, "udp4", "127.0.0.1:"+p(loPort), "node-lo")},
		"node lo6 tcp": {"node", "tcp", tcpCounter(t, c.node, "tcp6", "[::1]:"+p(loPort), "node-lo")},
		"node lo6 udp": {"node", "udp", udpCounter(t, c.node, "udp6", "[::1]:"+p(loPort), "node-lo")},
	}

	list := c.list(t, c.bridgePlugin(), c.plugin(""))
	rt := c.rt([]map[string]any{portMapping("tcp", hostPort, 80, "")})
	t.Cleanup(func() {
		if err := c.inNode(t, func(ctx context.Context) error { return c.cni.DelNetworkList(ctx, list, rt) }); err != nil {
			t.Errorf("cleanup DEL: %v", err)
		}
	})
	c.add(t, list, rt)
	mustAsk(t, c.client, "tcp", hp(chainNode4, hostPort), "web saw "+chainClient4)

	side4, side6 := hp(sidePod4, 0), hp(sidePod6, 0)
	for _, tc := range []struct {
		what, proto, from, to, server string
	}{
		{"another machine, IPv4", "tcp", side4, hp(chainClient4, clientPort), "client tcp"},
		{"another machine, IPv4", "udp", side4, hp(chainClient4, clientPort), "client udp"},
		{"another machine, IPv6", "tcp", side6, hp(chainClient6, clientPort), "client tcp"},
		{"another machine, IPv6", "udp", side6, hp(chainClient6, clientPort), "client udp"},
		{"the node's address, IPv4", "tcp", side4, hp(chainNode4, nodePort), "node tcp"},
		{"the node's address, IPv4", "udp", side4, hp(chainNode4, nodePort), "node udp"},
		{"the node's address, IPv6", "tcp", side6, hp(chainNode6, nodePort), "node tcp"},
		{"the node's address, IPv6", "udp", side6, hp(chainNode6, nodePort), "node udp"},
		{"the node's bridge address", "tcp", side4, hp("10.88.0.1", nodePort), "node tcp"},
		{"the node's 127.0.0.1 by pasta's address", "tcp", side4, hp(sidePasta4, loPort), "node lo4 tcp"},
		{"the node's 127.0.0.1 by pasta's address", "udp", side4, hp(sidePasta4, loPort), "node lo4 udp"},
		{"the node's ::1 by pasta's address", "tcp", side6, "[" + sidePasta6 + "%pasta0]:" + p(loPort), "node lo6 tcp"},
		{"the node's ::1 by pasta's address", "udp", side6, "[" + sidePasta6 + "%pasta0]:" + p(loPort), "node lo6 udp"},
	} {
		t.Run(tc.what+" "+tc.proto, func(t *testing.T) {
			t.Parallel() // after the checks below: they count no probe
			s := servers[tc.server]
			before := s.hits.Load()
			got, err := askIn(c.pod, tc.proto, tc.from, tc.to, time.Second)
			if err == nil {
				t.Errorf("from the pod's side address %s to %s: answered %q", tc.from, tc.to, got)
			} else {
				t.Logf("from %s to %s: %v", tc.from, tc.to, err)
			}
			time.Sleep(100 * time.Millisecond)
			if n := s.hits.Load() - before; n != 0 {
				t.Errorf("the %s server saw %d connection(s) or datagram(s) from the side", s.where, n)
			}
		})
	}

	// The probes are sound: the pod network reaches the client and the
	// node, the node its own loopback servers.
	for _, ok := range []struct {
		n           *pastatest.NetNS
		proto, to   string
		want        string
		description string
	}{
		{c.pod, "tcp", hp(chainClient4, clientPort), "client", "the pod to the client by its network, IPv4"},
		{c.pod, "udp", hp(chainClient4, clientPort), "client", "the pod to the client by its network, IPv4, UDP"},
		{c.pod, "tcp", hp(chainClient6, clientPort), "client", "the pod to the client by its network, IPv6"},
		{c.pod, "tcp", hp("10.88.0.1", nodePort), "node", "the pod to the node's bridge address"},
		{c.node, "tcp", hp("127.0.0.1", loPort), "node-lo", "the node to its 127.0.0.1"},
		{c.node, "udp", hp("::1", loPort), "node-lo", "the node to its ::1"},
	} {
		if got, err := askIn(ok.n, ok.proto, "", ok.to, 5*time.Second); err != nil || got != ok.want {
			t.Errorf("%s (%s %s): %q, %v; want %q", ok.description, ok.proto, ok.to, got, err, ok.want)
		}
	}
}
