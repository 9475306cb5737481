package ctlclient_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

var lo4 = netip.MustParseAddr("127.0.0.1")

func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func newClient(s *ctltest.Server) *ctlclient.Client {
	return &ctlclient.Client{Path: s.Path, ListenAddrs: s.ListenAddrs, Timeout: 5 * time.Second}
}

// add plans adding rules to HOST.
func add(rules ...wire.Rule) ctlclient.Planner {
	return edit(wire.Edit{Pif: wire.PifHost, Add: rules})
}

func edit(es ...wire.Edit) ctlclient.Planner {
	return func(wire.Tables) ([]wire.Edit, error) { return es, nil }
}

func tcp(port uint16) wire.Rule { return wire.NewRule(wire.ProtoTCP, lo4, port, port, 80, 0) }

func statusOf(t *testing.T, err error) ctlclient.Status {
	t.Helper()
	var se *ctlclient.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *StatusError", err)
	}
	return se.Result.Status
}

func TestReadDefault(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	snap, err := newClient(s).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Hello != wire.DefaultHello() || snap.PeerUID != uint32(os.Getuid()) {
		t.Fatalf("snapshot %+v", snap)
	}
	if string(snap.Tables.AppendServer(nil)) != string(ctltest.DefaultTables().AppendServer(nil)) {
		t.Fatal("tables differ from the server's")
	}
	waitFor(t, func() bool { return s.Stats().ReadOnly == 1 })
	if st := s.Stats(); st.Updates != 1 {
		t.Fatalf("a read changed something: %+v", st)
	}
}

func TestUpdateSuccess(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	p1, p2 := freePort(t), freePort(t)
	dual := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p2, p2, 80, wire.FlagDualStack)
	udp := wire.NewRule(wire.ProtoUDP, lo4, p1, p1, 53, 0)
	res, err := newClient(s).Update(context.Background(), add(tcp(p1), dual, udp), ctlclient.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != ctlclient.StatusSuccess || len(res.Added) != 3 || res.Method != ctlclient.VerifyInodes {
		t.Fatalf("result %+v", res)
	}
	host := s.Tables().Lookup(wire.PifHost)
	if len(host.Rules) != 3 || len(s.Tables().Lookup(wire.PifSplice).Rules) != 4 {
		t.Fatalf("server tables %+v", s.Tables())
	}
}

func TestNoOpSendsNothingButVerifies(t *testing.T) {
	p := freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(p)}
	s := ctltest.NewServer(t, ts)
	res, err := newClient(s).Update(context.Background(), add(tcp(p)), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}
	// One connection: the tables read, the listeners checked while it
	// is held, closed without sending.
	waitFor(t, func() bool { return s.Stats().ReadOnly == 1 })
	if st := s.Stats(); st.Updates != 1 || st.Conns != 1 {
		t.Fatalf("no-op sent something, or connected twice: %+v", st)
	}
	// A no-op whose rule does not listen is still a failure.
	s.FailBind(p)
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	_, err = newClient(s).Update(context.Background(), add(tcp(p)), ctlclient.UpdateOptions{})
	if st := statusOf(t, err); st != ctlclient.StatusSocketFail || !strings.Contains(err.Error(), "nothing to roll back") {
		t.Fatalf("status %v: %v", st, err)
	}
	if st := s.Stats(); st.Updates != 2 {
		t.Fatalf("a no-op rolled something back: %+v", st)
	}
}

// A verified update whose rules listen where nothing of the forwarder
// listened before, and whose removed rules no longer do, is established
// from the listeners: one connection, nothing read back.
func TestVerifiedUpdateOneConnection(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(pb)}
	s := ctltest.NewServer(t, ts)
	res, err := newClient(s).Update(context.Background(), edit(wire.Edit{Pif: wire.PifHost, Remove: []wire.Rule{tcp(pb)}, Add: []wire.Rule{tcp(pa)}}), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess || len(res.Added) != 1 || len(res.Removed) != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	if st := s.Stats(); st.Conns != 1 || st.Updates != 2 { // the server's own tables, then this update
		t.Fatalf("stats %+v, want one connection that updated", st)
	}
}

// A client given ReadPID reads the forwarder's PID file through it, never
// by its path (here one that does not exist), and finds the forwarder.
func TestReadPIDReplacesThePath(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	c := newClient(s)
	c.PIDFile = filepath.Join(t.TempDir(), "absent", "pasta.pid")
	calls := 0
	c.ReadPID = func() (int, error) { calls++; return os.Getpid(), nil }
	res, err := c.Update(context.Background(), add(tcp(freePort(t))), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}
	if calls == 0 {
		t.Fatalf("ReadPID was not called")
	}
}

func TestUnverified(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	p := freePort(t)
	s.FailBind(p) // would be a socket fail if verified
	res, err := newClient(s).Update(context.Background(), add(tcp(p)), ctlclient.UpdateOptions{NoVerify: true})
	if err != nil || res.Status != ctlclient.StatusUnverified || res.Method != ctlclient.VerifyNone {
		t.Fatalf("%v %+v", err, res)
	}
	if st := s.Stats(); st.Conns != 1 || st.Updates != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSafeFail(t *testing.T) {
	p := freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(p)}
	for _, tc := range []struct {
		name   string
		faults []ctltest.Fault
		rule   wire.Rule
	}{
		{"conflict", nil, wire.NewRule(wire.ProtoTCP, lo4, p, p, 81, 0)},
		{"refused", []ctltest.Fault{{RejectUpdate: true}}, tcp(freePort(t))},
		{"invalid rule (to port 0)", nil, wire.NewRule(wire.ProtoTCP, lo4, 10, 10, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ctltest.NewServer(t, ts, ctltest.WithFaults(tc.faults...))
			before := s.Tables()
			res, err := newClient(s).Update(context.Background(), add(tc.rule), ctlclient.UpdateOptions{})
			if st := statusOf(t, err); st != ctlclient.StatusSafeFail {
				t.Fatalf("status %v", st)
			}
			if string(s.Tables().AppendServer(nil)) != string(before.AppendServer(nil)) {
				t.Fatal("tables changed")
			}
			if !strings.Contains(err.Error(), "nothing changed") || !strings.Contains(err.Error(), strings.TrimSpace(tc.rule.String())) {
				t.Fatalf("message %q", err)
			}
			if res.Status != ctlclient.StatusSafeFail {
				t.Fatal("result status")
			}
		})
	}
}

func TestUnknownPifIsSafeFail(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	_, err := newClient(s).Update(context.Background(), edit(wire.Edit{Pif: "TAP", Add: []wire.Rule{tcp(1000)}}), ctlclient.UpdateOptions{})
	if st := statusOf(t, err); st != ctlclient.StatusSafeFail || s.Stats().Conns != 1 {
		t.Fatalf("status %v, stats %+v", st, s.Stats())
	}
}

func TestPlanError(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	boom := errors.New("boom")
	_, err := newClient(s).Update(context.Background(), func(wire.Tables) ([]wire.Edit, error) { return nil, boom }, ctlclient.UpdateOptions{})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Stats().ReadOnly == 1 })
}

func TestSocketFailRollsBack(t *testing.T) {
	pOld, pNew, pTaken := freePort(t), freePort(t), freePort(t)
	other := wire.NewRule(wire.ProtoTCP, lo4, pOld, pOld, 80, 0)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{other, tcp(pNew)}
	s := ctltest.NewServer(t, ts)
	// A port taken by this test process would count as the server's own
	// listener (same process): make the server's bind fail instead.
	s.FailBind(pTaken)
	// Replace our rule for pNew by one for the taken port.
	res, err := newClient(s).Update(context.Background(), edit(wire.Edit{Pif: wire.PifHost, Remove: []wire.Rule{tcp(pNew)}, Add: []wire.Rule{tcp(pTaken)}}), ctlclient.UpdateOptions{})
	if st := statusOf(t, err); st != ctlclient.StatusSocketFail {
		t.Fatalf("status %v: %v", st, err)
	}
	if len(res.Failed) != 1 || !res.Failed[0].Rule.Equal(tcp(pTaken)) || len(res.Failed[0].Ports) != 1 || res.Failed[0].Ports[0] != pTaken {
		t.Fatalf("failed %+v", res.Failed)
	}
	host := s.Tables().Lookup(wire.PifHost)
	if !host.Contains(other) || !host.Contains(tcp(pNew)) || host.Contains(tcp(pTaken)) {
		t.Fatalf("not rolled back: %v", host.Rules)
	}
	for _, p := range []uint16{pOld, pNew} {
		if l, err := net.Listen("tcp4", netip.AddrPortFrom(lo4, p).String()); err == nil {
			l.Close()
			t.Fatalf("port %d not listening after rollback", p)
		}
	}
	msg := err.Error()
	for _, want := range []string{s.Path, "port " + itoa(pTaken) + " not listening", "rolled back", "TCP [127.0.0.1]:" + itoa(pTaken)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestRollbackFail(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fault for the rollback transaction (third connection)
		fault func(keep uint16) ctltest.Fault
		want  string
	}{
		{"rollback refused", func(uint16) ctltest.Fault { return ctltest.Fault{RejectUpdate: true} }, "still present"},
		{"kept rule cannot listen", func(keep uint16) ctltest.Fault {
			return ctltest.Fault{Before: func(s *ctltest.Server) { s.FailBind(keep) }}
		}, "after rollback, not listening"},
		{"forwarder dies", func(uint16) ctltest.Fault { return ctltest.Fault{CrashAfterSwitch: true} }, "read back after rollback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, bad := freePort(t), freePort(t)
			ts := ctltest.DefaultTables()
			ts[0].Rules = []wire.Rule{tcp(keep)}
			s := ctltest.NewServer(t, ts, ctltest.WithFaults(ctltest.Fault{}, ctltest.Fault{}, tc.fault(keep)))
			s.FailBind(bad)
			c := newClient(s)
			c.Timeout = time.Second
			res, err := c.Update(context.Background(), add(tcp(keep), tcp(bad)), ctlclient.UpdateOptions{})
			if st := statusOf(t, err); st != ctlclient.StatusRollbackFail {
				t.Fatalf("status %v: %v", st, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rollback did not restore") {
				t.Fatalf("message %q lacks %q", err, tc.want)
			}
			if len(res.Failed) != 1 || res.Failed[0].Ports[0] != bad {
				t.Fatalf("failed %+v", res.Failed)
			}
		})
	}
}

func TestMixed(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(pb)}
	// Another client puts pb back right after the update.
	s := ctltest.NewServer(t, ts, ctltest.WithFaults(ctltest.Fault{After: func(s *ctltest.Server) {
		cur := s.Tables()
		cur[0].Rules = append(cur[0].Rules, tcp(pb))
		if err := s.Update(cur); err != nil {
			t.Error(err)
		}
	}}))
	_, err := newClient(s).Update(context.Background(), edit(wire.Edit{Pif: wire.PifHost, Remove: []wire.Rule{tcp(pb)}, Add: []wire.Rule{tcp(pa)}}), ctlclient.UpdateOptions{})
	var me *ctlclient.MixedError
	if !errors.As(err, &me) || len(me.Remaining) != 1 || len(me.Absent) != 0 || !strings.Contains(err.Error(), itoa(pb)) {
		t.Fatalf("%v", err)
	}
}

func TestOthersChangesKept(t *testing.T) {
	// Another client adds a rule between read-back and... our own update
	// must not remove rules it did not own, and must judge by its edits.
	pOther, pMine := freePort(t), freePort(t)
	s := ctltest.NewServer(t, ctltest.DefaultTables(), ctltest.WithFaults(ctltest.Fault{}, ctltest.Fault{Before: func(s *ctltest.Server) {
		cur := s.Tables()
		cur[0].Rules = append(cur[0].Rules, tcp(pOther))
		if err := s.Update(cur); err != nil {
			t.Error(err)
		}
	}}))
	res, err := newClient(s).Update(context.Background(), add(tcp(pMine)), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestWarningsForOthers(t *testing.T) {
	pOther, pMine := freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(pOther)}
	s := ctltest.NewServer(t, ts)
	s.FailBind(pOther)
	// Order matters: the failing other rule is first, so the server stops
	// there and ours (appended) is unbound too: that is a socket fail.
	// With a weak-free other rule that listens after ours... use Verify.
	v, err := newClient(s).Verify(context.Background(), []ctlclient.PifRule{{Pif: wire.PifHost, Rule: tcp(pMine)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Missing) != 1 || len(v.Warnings) != 0 {
		t.Fatalf("verify %+v", v)
	}
	if err := s.Update(ts); err != nil { // rebind: pOther now fails
		t.Fatal(err)
	}
	v, err = newClient(s).Verify(context.Background(), nil)
	if err != nil || len(v.Warnings) != 1 || v.Warnings[0].Ports[0] != pOther {
		t.Fatalf("verify %+v %v", v, err)
	}
}

func TestVerify(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	weak := wire.NewRule(wire.ProtoTCP, lo4, p2, p2, 80, wire.FlagWeak)
	ts[0].Rules = []wire.Rule{tcp(p1), weak}
	s := ctltest.NewServer(t, ts)
	want := []ctlclient.PifRule{{Pif: wire.PifHost, Rule: tcp(p1)}, {Pif: wire.PifHost, Rule: weak}, {Pif: wire.PifSplice, Rule: ts[1].Rules[0]}}
	v, err := newClient(s).Verify(context.Background(), want)
	if err != nil || len(v.Missing)+len(v.NotListening)+len(v.Warnings) != 0 || v.Method != ctlclient.VerifyInodes {
		t.Fatalf("%+v %v", v, err)
	}
	// The server loses its sockets (as if the rule failed to bind).
	s.FailBind(p1)
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	// The forwarder stops binding at p1's rule: the weak rule after it has
	// no port either, and names p1's rule as what blocks it.
	v, err = newClient(s).Verify(context.Background(), want)
	if err != nil || len(v.NotListening) != 2 || v.NotListening[0].Ports[0] != p1 || v.NotListening[0].BlockedBy != nil ||
		v.NotListening[1].BlockedBy == nil || !v.NotListening[1].BlockedBy.Rule.Equal(tcp(p1)) {
		t.Fatalf("%+v %v", v, err)
	}
	if st := s.Stats(); st.Updates != 2 {
		t.Fatalf("Verify changed something: %+v", st)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

var _ = syscall.EAGAIN

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

// Tables the client does not know, and rules it does not own, go back as
// they came.
func TestUnknownPifKept(t *testing.T) {
	ts := ctltest.DefaultTables()
	tap := wire.NewTable(2, "TAP", 0x0f, wire.NewRule(wire.ProtoUDP, netip.MustParseAddr("::1"), 7000, 7010, 7000, wire.FlagWeak))
	ts = wire.Tables{ts[0], tap, ts[1]}
	s := ctltest.NewServer(t, ts)
	p := freePort(t)
	res, err := newClient(s).Update(context.Background(), add(tcp(p)), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}
	want := ts.Clone()
	want[0].Rules = append(want[0].Rules, tcp(p))
	if got := s.Tables(); string(got.AppendServer(nil)) != string(want.AppendServer(nil)) {
		t.Fatalf("tables after update %v, want %v", got, want)
	}
}

// Another client's rule whose port is taken stops the forwarder's binding
// before ours: a socket fail of ours, rolled back, naming the culprit.
func TestOthersFailureSilencesOurs(t *testing.T) {
	pOther, pMine := freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(pOther)}
	s := ctltest.NewServer(t, ts)
	s.FailBind(pOther)
	res, err := newClient(s).Update(context.Background(), add(tcp(pMine)), ctlclient.UpdateOptions{})
	if st := statusOf(t, err); st != ctlclient.StatusSocketFail {
		t.Fatalf("status %v: %v", st, err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Ports[0] != pOther || !strings.Contains(err.Error(), "other rules not listening") {
		t.Fatalf("warnings %+v, message %q", res.Warnings, err)
	}
	if s.Tables().Lookup(wire.PifHost).Contains(tcp(pMine)) {
		t.Fatal("not rolled back")
	}
}

// A listener the forwarder opens while Verify waits (as pasta retries a
// failed bind) is found: its socket was not in the fd table read first.
func TestVerifyListenerAppears(t *testing.T) {
	p := freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(p)}
	s := ctltest.NewServer(t, ctltest.DefaultTables(), ctltest.WithDefaultFault(ctltest.Fault{Before: func(*ctltest.Server) {
		// The in-process server is the forwarder (same pid): a socket the
		// test opens now is its.
		go func() {
			time.Sleep(60 * time.Millisecond)
			l, err := net.Listen("tcp4", netip.AddrPortFrom(lo4, p).String())
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { l.Close() })
		}()
	}}))
	s.FailBind(p)
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	c := newClient(s)
	c.ListenWait = 2 * time.Second
	v, err := c.Verify(context.Background(), []ctlclient.PifRule{{Pif: wire.PifHost, Rule: tcp(p)}})
	if err != nil || len(v.NotListening) != 0 || len(v.Missing) != 0 {
		t.Fatalf("%+v %v", v, err)
	}
}
