package pastatest

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestHarness checks the harness itself against the real pasta: a rule
// added with pesto forwards TCP and UDP from the host's loopback to
// servers in the namespace; Kill leaves a dead socket; Restart gives a
// forwarder without rules on the same socket.
func TestHarness(t *testing.T) {
	t.Logf("testing against %s", Version(t))
	f := Start(t)
	if pid := f.PID(t); pid <= 0 {
		t.Fatalf("PID %d", pid)
	}
	ts := f.ReadTables(t)
	if h := ts.Lookup("HOST"); h == nil || len(h.Rules) != 0 {
		t.Fatalf("HOST table at start: %+v, want present and empty", h)
	}
	if s := ts.Lookup("SPLICE"); s == nil || len(s.Rules) != 4 {
		t.Fatalf("SPLICE table at start: %+v, want pasta's 4 rules", s)
	}

	ServeTCP(t, f.NS, ":80", "tcp-hello")
	ServeUDP(t, f.NS, ":80", "udp-hello")
	tp, up := FreePort(t, "tcp"), FreePort(t, "udp")
	f.Pesto(t, "-A", "-t", fmt.Sprintf("%d:80", tp), "-u", fmt.Sprintf("%d:80", up))
	if out := f.Tables(t); !strings.Contains(out, fmt.Sprintf("TCP [*]:%d  =>  80", tp)) {
		t.Fatalf("pesto printout lacks the TCP rule:\n%s", out)
	}
	for _, ip := range []string{"127.0.0.1", "::1"} {
		MustAnswer(t, "tcp", HostPort(ip, tp), "tcp-hello")
		MustAnswer(t, "udp", HostPort(ip, up), "udp-hello")
	}

	if _, err := AskTCP(context.Background(), HostPort("192.0.2.1", tp)); err == nil ||
		!strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("a non-loopback destination was not refused: %v", err)
	}

	f.Kill(t)
	if !exited(f.PID(t)) {
		t.Fatalf("pasta %d still runs after Kill", f.PID(t))
	}
	if _, err := f.TryPesto(); err == nil {
		t.Fatalf("pesto answered after Kill")
	}
	MustNotAnswer(t, "tcp", HostPort("127.0.0.1", tp), "tcp-hello")

	f.Restart(t)
	if h := f.ReadTables(t).Lookup("HOST"); h == nil || len(h.Rules) != 0 {
		t.Fatalf("HOST table after restart: %+v, want empty", h)
	}
	f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:80", tp))
	MustAnswer(t, "tcp", HostPort("127.0.0.1", tp), "tcp-hello")
}

func TestFreePorts(t *testing.T) {
	ports := FreePorts(t, "tcp", 100)
	lo, hi := ephemeralRange()
	seen := map[uint16]bool{}
	for _, p := range ports {
		if seen[p] || int(p) < lo || int(p) > hi {
			t.Fatalf("port %d repeated or outside %d..%d: %v", p, lo, hi, ports)
		}
		seen[p] = true
	}
}

func TestFreePortRange(t *testing.T) {
	first := FreePortRange(t, "tcp", 1000)
	if first < rangeMin || int(first)+1000 > rangeMax {
		t.Fatalf("range %d+1000 outside 10000..30000", first)
	}
}

func TestBins(t *testing.T) {
	// As root with the forwarder fetched, Bins finds both binaries.
	pasta, pesto := Bins(t)
	if pasta == "" || pesto == "" {
		t.Fatal("empty paths")
	}
}
