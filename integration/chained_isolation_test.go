package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

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
		srv          *pastatest.Server
	}
	p := strconv.Itoa
	servers := map[string]server{
		"client tcp":   {"client", "tcp", pastatest.ServeTCP(t, c.client, ":"+p(clientPort), "client")},
		"client udp":   {"client", "udp", pastatest.ServeUDP(t, c.client, ":"+p(clientPort), "client")},
		"node tcp":     {"node", "tcp", pastatest.ServeTCP(t, c.node, ":"+p(nodePort), "node")},
		"node udp":     {"node", "udp", pastatest.ServeUDP(t, c.node, ":"+p(nodePort), "node")},
		"node lo4 tcp": {"node", "tcp", pastatest.ServeTCP(t, c.node, "127.0.0.1:"+p(loPort), "node-lo")},
		"node lo4 udp": {"node", "udp", pastatest.ServeUDP(t, c.node, "127.0.0.1:"+p(loPort), "node-lo")},
		"node lo6 tcp": {"node", "tcp", pastatest.ServeTCP(t, c.node, "[::1]:"+p(loPort), "node-lo")},
		"node lo6 udp": {"node", "udp", pastatest.ServeUDP(t, c.node, "[::1]:"+p(loPort), "node-lo")},
	}

	list := c.list(t, c.bridgePlugin(), c.plugin(""))
	rt := c.rt([]map[string]any{portMapping("tcp", hostPort, 80, "")})
	c.attach(t, list, rt)
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
			before := s.srv.Hits()
			got, err := askIn(c.pod, tc.proto, tc.from, tc.to, time.Second)
			if err == nil {
				t.Errorf("from the pod's side address %s to %s: answered %q", tc.from, tc.to, got)
			} else {
				t.Logf("from %s to %s: %v", tc.from, tc.to, err)
			}
			time.Sleep(100 * time.Millisecond)
			if n := s.srv.Hits() - before; n != 0 {
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
