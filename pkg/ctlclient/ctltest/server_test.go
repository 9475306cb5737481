package ctltest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// dial connects and reads the greeting; it fails the test on error.
func dial(t *testing.T, s *Server) (net.Conn, wire.Tables) {
	t.Helper()
	c, err := net.Dial("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	h, err := wire.ReadHello(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	ts, err := wire.ReadServerTables(c, wire.HelloSize)
	if err != nil {
		t.Fatal(err)
	}
	return c, ts
}

// send writes ts and waits for the server to close the connection.
func send(t *testing.T, c net.Conn, ts wire.Tables) {
	t.Helper()
	if _, err := c.Write(ts.AppendClient(nil)); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, c) // server closes after handling
	c.Close()
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func TestDefaultTablesMatchRealPasta(t *testing.T) {
	// Captured from pasta 0.0~git20261002 started with -t none -u none.
	const splice0 = "00000000000000000000000000000000000000000000000000000000000000006c6f000000000000000000000000000000017fff00010607"
	s := NewServer(t, DefaultTables())
	c, ts := dial(t, s)
	c.Close()
	if len(ts) != 2 || ts[0].Name() != "HOST" || ts[0].ID != 1 || ts[1].Name() != "SPLICE" || ts[1].ID != 3 {
		t.Fatalf("tables %v", ts)
	}
	if ts[0].Caps != 0x3f || ts[1].Caps != 0x3f || len(ts[0].Rules) != 0 || len(ts[1].Rules) != 4 {
		t.Fatalf("caps/counts: %v", ts)
	}
	if got := ts[1].Rules[0].Append(nil); !bytes.Equal(got, mustHex(t, splice0)) {
		t.Fatalf("SPLICE rule 0 = %x", got)
	}
}

func TestUpdateSwitchesAndBinds(t *testing.T) {
	s := NewServer(t, DefaultTables())
	port := freePort(t)
	c, ts := dial(t, s)
	r := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), port, port, 80, 0)
	ts.Lookup("HOST").Rules = append(ts.Lookup("HOST").Rules, r)
	send(t, c, ts)
	waitUpdates(t, s, 1+1)
	if !s.Tables().Lookup("HOST").Contains(r) {
		t.Fatal("rule not active")
	}
	if _, err := net.Listen("tcp4", netip.AddrPortFrom(loopback4, port).String()); err == nil {
		t.Fatal("port not bound by the server")
	}
	if len(s.Tables().Lookup("SPLICE").Rules) != 4 {
		t.Fatal("SPLICE rules lost")
	}
}

func TestOmittedTableIsCleared(t *testing.T) {
	s := NewServer(t, DefaultTables())
	c, ts := dial(t, s)
	send(t, c, ts[:1]) // HOST only
	waitUpdates(t, s, 2)
	if n := len(s.Tables().Lookup("SPLICE").Rules); n != 0 {
		t.Fatalf("SPLICE has %d rules, want 0 (every table is replaced)", n)
	}
}

func TestReadOnlyChangesNothing(t *testing.T) {
	s := NewServer(t, DefaultTables())
	c, _ := dial(t, s)
	c.Close()
	waitFor(t, func() bool { return s.Stats().ReadOnly == 1 })
	if st := s.Stats(); st.Updates != 1 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBadRuleKeepsOldTables(t *testing.T) {
	any6 := netip.IPv6Unspecified()
	v4 := netip.MustParseAddr("127.0.0.1")
	v6 := netip.MustParseAddr("::1")
	withTarget := func(r wire.Rule, a string) wire.Rule { r.Target = wire.To16(netip.MustParseAddr(a)); return r }
	badIf := wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0)
	copy(badIf.IfName[:], "0123456789abcdef")
	ok := wire.NewRule(wire.ProtoTCP, v4, 100, 110, 100, 0)
	for _, tc := range []struct {
		name string
		caps wire.Caps
		rule wire.Rule
	}{
		{"first>last", 0x3f, wire.NewRule(wire.ProtoTCP, v4, 20, 10, 10, 0)},
		{"first 0", 0x3f, wire.NewRule(wire.ProtoTCP, v4, 0, 10, 10, 0)},
		{"to 0", 0x3f, wire.NewRule(wire.ProtoTCP, v4, 10, 10, 0, 0)},
		{"to overflow", 0x3f, wire.NewRule(wire.ProtoTCP, v4, 10, 20, 65530, 0)},
		{"unknown flag", 0x3f, wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0x08)},
		{"dual-stack non-any", 0x3f, wire.NewRule(wire.ProtoTCP, v6, 10, 10, 10, wire.FlagDualStack)},
		{"dual-stack no v6", 0x3d, wire.NewRule(wire.ProtoTCP, any6, 10, 10, 10, wire.FlagDualStack)},
		{"v4 no cap", 0x3e, wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0)},
		{"v6 no cap", 0x3d, wire.NewRule(wire.ProtoTCP, v6, 10, 10, 10, 0)},
		{"tcp no cap", 0x3b, wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0)},
		{"udp no cap", 0x37, wire.NewRule(wire.ProtoUDP, v4, 10, 10, 10, 0)},
		{"proto 1", 0x3f, wire.NewRule(1, v4, 10, 10, 10, 0)},
		{"multicast target", 0x3f, withTarget(wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0), "224.0.0.1")},
		{"broadcast target", 0x3f, withTarget(wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0), "255.255.255.255")},
		{"dual-stack target", 0x3f, withTarget(wire.NewRule(wire.ProtoTCP, any6, 10, 10, 10, wire.FlagDualStack), "::2")},
		{"family mismatch", 0x3f, withTarget(wire.NewRule(wire.ProtoTCP, v4, 10, 10, 10, 0), "::2")},
		{"duplicate", 0x3f, ok},
		{"overlap", 0x3f, wire.NewRule(wire.ProtoTCP, v4, 110, 120, 110, 0)},
		{"overlap any4", 0x3f, wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("0.0.0.0"), 105, 105, 1, 0)},
		{"overlap dual", 0x3f, wire.NewRule(wire.ProtoTCP, any6, 101, 101, 1, wire.FlagDualStack)},
		{"interface unterminated", 0x3f, badIf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := wire.NewTable(1, "HOST", tc.caps)
			if tc.caps == 0x3f {
				host.Rules = []wire.Rule{ok}
			}
			s := NewServer(t, wire.Tables{host})
			before := s.Tables()
			c, ts := dial(t, s)
			ts[0].Rules = append(ts[0].Rules, tc.rule)
			send(t, c, ts)
			waitFor(t, func() bool { return s.Stats().Rejected == 1 })
			if got := s.Tables(); !bytes.Equal(got.AppendServer(nil), before.AppendServer(nil)) {
				t.Fatal("tables changed after a bad rule")
			}
			t.Log(s.Stats().LastErr)
		})
	}
}

func TestValidNeighboursAccepted(t *testing.T) {
	// Rules that look alike but do not conflict.
	v4 := netip.MustParseAddr("127.0.0.1")
	rules := []wire.Rule{
		wire.NewRule(wire.ProtoTCP, v4, 100, 110, 100, wire.FlagWeak),
		wire.NewRule(wire.ProtoUDP, v4, 100, 110, 100, wire.FlagWeak),
		wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.2"), 100, 110, 100, wire.FlagWeak),
		wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("::"), 100, 110, 100, wire.FlagWeak), // v6 any vs v4
		wire.NewRule(wire.ProtoTCP, v4, 111, 111, 65535, wire.FlagWeak),
	}
	s := NewServer(t, DefaultTables())
	if err := s.Update(wire.Tables{wire.NewTable(1, "HOST", 0x3f, rules...)}); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownPifRefused(t *testing.T) {
	s := NewServer(t, DefaultTables())
	c, ts := dial(t, s)
	ts = append(ts, wire.NewTable(2, "TAP", 0x3f))
	send(t, c, ts)
	waitFor(t, func() bool { return s.Stats().Rejected == 1 })
}

func TestBindStopsAtFirstFailure(t *testing.T) {
	s := NewServer(t, DefaultTables())
	p1, p2 := freePort(t), freePort(t)
	taken, err := net.Listen("tcp4", netip.AddrPortFrom(loopback4, p1).String())
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	v4 := netip.MustParseAddr("127.0.0.1")
	ts := DefaultTables()
	ts[0].Rules = []wire.Rule{wire.NewRule(wire.ProtoTCP, v4, p1, p1, 80, 0), wire.NewRule(wire.ProtoTCP, v4, p2, p2, 80, 0)}
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(s.Stats().LastErr, syscall.EADDRINUSE) {
		t.Fatalf("LastErr %v", s.Stats().LastErr)
	}
	if len(s.Tables()[0].Rules) != 2 {
		t.Fatal("new tables not kept after a bind failure")
	}
	l, err := net.Listen("tcp4", netip.AddrPortFrom(loopback4, p2).String())
	if err != nil {
		t.Fatalf("rule after the failing one was bound: %v", err)
	}
	l.Close()
}

func TestOneClientAtATime(t *testing.T) {
	s := NewServer(t, DefaultTables())
	c1, _ := dial(t, s) // being served
	// With backlog 0 one more connect may queue; a further one fails.
	var queued []net.Conn
	var err error
	for i := 0; i < 4 && err == nil; i++ {
		var c net.Conn
		c, err = net.Dial("unix", s.Path)
		if err == nil {
			queued = append(queued, c)
		}
	}
	if !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("connect while busy: %v, want EAGAIN", err)
	}
	c1.Close()
	for _, c := range queued {
		c.Close()
	}
}

func TestFaults(t *testing.T) {
	s := NewServer(t, DefaultTables(), WithFaults(
		Fault{CloseOnAccept: true},
		Fault{TruncateAt: 25},
		Fault{Hello: &wire.Hello{Magic: wire.Magic, Version: 3, PifNameSize: 128, IfNameSize: 16}},
		Fault{Greeting: []byte("garbage!garbage!garbage!")},
	))
	read := func() error {
		c, err := net.Dial("unix", s.Path)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		h, err := wire.ReadHello(c)
		if err != nil {
			return err
		}
		if err := h.Check(); err != nil {
			return err
		}
		_, err = wire.ReadServerTables(c, wire.HelloSize)
		return err
	}
	var me *wire.MismatchError
	if err := read(); !errors.Is(err, wire.ErrTruncated) {
		t.Errorf("close on accept: %v", err)
	}
	if err := read(); !errors.Is(err, wire.ErrTruncated) {
		t.Errorf("truncate: %v", err)
	}
	if err := read(); !errors.As(err, &me) || me.Field != "version" {
		t.Errorf("version 3: %v", err)
	}
	if err := read(); !errors.As(err, &me) || me.Field != "magic" {
		t.Errorf("garbage: %v", err)
	}
	if err := read(); err != nil {
		t.Errorf("normal after faults: %v", err)
	}
}

func TestStall(t *testing.T) {
	s := NewServer(t, DefaultTables(), WithFaults(Fault{StallAt: 30}))
	c, err := net.Dial("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := wire.ReadHello(c); err != nil {
		t.Fatal(err)
	}
	_, err = wire.ReadServerTables(c, wire.HelloSize)
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Fatalf("stall: %v, want a timeout", err)
	}
}

func TestCrashAfterSwitch(t *testing.T) {
	port := freePort(t)
	s := NewServer(t, DefaultTables(), WithFaults(Fault{CrashAfterSwitch: true}))
	c, ts := dial(t, s)
	ts[0].Rules = append(ts[0].Rules, wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), port, port, 80, 0))
	send(t, c, ts)
	waitFor(t, func() bool { return s.Stats().Updates == 2 })
	waitFor(t, func() bool {
		_, err := net.Dial("unix", s.Path)
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	l, err := net.Listen("tcp4", netip.AddrPortFrom(loopback4, port).String())
	if err != nil {
		t.Fatalf("crashed server still holds its port: %v", err)
	}
	l.Close()
}

func TestBeforeRunsAnotherClient(t *testing.T) {
	v4 := netip.MustParseAddr("127.0.0.1")
	other := wire.NewRule(wire.ProtoTCP, v4, 5000, 5000, 80, wire.FlagWeak)
	s := NewServer(t, DefaultTables(), WithFaults(Fault{Before: func(s *Server) {
		ts := s.Tables()
		ts[0].Rules = append(ts[0].Rules, other)
		if err := s.Update(ts); err != nil {
			t.Error(err)
		}
	}}))
	c, ts := dial(t, s)
	c.Close()
	if !ts[0].Contains(other) {
		t.Fatal("change by Before not seen by the client")
	}
}

func waitUpdates(t *testing.T, s *Server, n int) {
	t.Helper()
	waitFor(t, func() bool { return s.Stats().Updates >= n })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A pif repeated in the client's list adds to the same table, as on the
// real forwarder (checked with a raw client against pasta 0.0~git20261002).
func TestRepeatedPifAdds(t *testing.T) {
	s := NewServer(t, DefaultTables())
	c, ts := dial(t, s)
	a := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), 28001, 28001, 80, wire.FlagWeak)
	b := wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), 28002, 28002, 80, wire.FlagWeak)
	send(t, c, wire.Tables{wire.NewTable(1, "HOST", 0, a), wire.NewTable(1, "HOST", 0, b), ts[1]})
	waitUpdates(t, s, 2)
	if host := s.Tables()[0]; len(host.Rules) != 2 || !host.Contains(a) || !host.Contains(b) {
		t.Fatalf("HOST %v", host.Rules)
	}
}

// A weak rule binds what it can; one that binds nothing stops the binding
// of the rules after it.
func TestWeakRules(t *testing.T) {
	s := NewServer(t, DefaultTables())
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	v4 := netip.MustParseAddr("127.0.0.1")
	s.FailBind(p1)
	for p3-1 == p1 || p3-1 == p2 || p3 == p1 {
		p3 = freePort(t)
	}
	ts := DefaultTables()
	ts[0].Rules = []wire.Rule{
		wire.NewRule(wire.ProtoTCP, v4, p1, p1, 80, wire.FlagWeak), // none binds: stops here
		wire.NewRule(wire.ProtoTCP, v4, p2, p2, 80, 0),
	}
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp4", netip.AddrPortFrom(v4, p2).String()); err != nil {
		t.Fatalf("rule after a weak rule that bound nothing was bound: %v", err)
	} else {
		l.Close()
	}
	// A weak rule over p3-1..p3 with p3-1 failing binds p3, and what follows.
	s.FailBind(p3 - 1)
	ts[0].Rules[0] = wire.NewRule(wire.ProtoTCP, v4, p3-1, p3, 80, wire.FlagWeak)
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	for _, p := range []uint16{p3, p2} {
		if l, err := net.Listen("tcp4", netip.AddrPortFrom(v4, p).String()); err == nil {
			l.Close()
			t.Fatalf("port %d not bound", p)
		}
	}
}

// A restart, after a crash or not, makes a new control socket at the same
// path (another inode) with the given tables; the old rules' ports close.
func TestRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		port := freePort(t)
		var opts []Option
		if crash {
			opts = append(opts, WithFaults(Fault{CrashAfterSwitch: true}))
		}
		s := NewServer(t, DefaultTables(), opts...)
		inode := func() uint64 {
			t.Helper()
			inodes, err := procnet.UnixListeners(s.Path)
			if err != nil || len(inodes) != 1 {
				t.Fatalf("listening sockets at %s: %v %v", s.Path, inodes, err)
			}
			return inodes[0]
		}
		before := inode()
		c, ts := dial(t, s)
		ts[0].Rules = append(ts[0].Rules, wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), port, port, 80, 0))
		send(t, c, ts)
		waitFor(t, func() bool { return s.Stats().Updates == 2 })
		if err := s.Restart(DefaultTables()); err != nil {
			t.Fatal(err)
		}
		if inode() == before {
			t.Fatalf("crash %v: the control socket was not made anew", crash)
		}
		c, ts = dial(t, s)
		c.Close()
		if len(ts[0].Rules) != 0 {
			t.Fatalf("crash %v: rules after restart: %v", crash, ts[0].Rules)
		}
		l, err := net.Listen("tcp4", netip.AddrPortFrom(loopback4, port).String())
		if err != nil {
			t.Fatalf("crash %v: restarted server still holds the old rule's port: %v", crash, err)
		}
		l.Close()
	}
}
