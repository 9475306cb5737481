package ctlclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

func weakTCP(first, last uint16) wire.Rule {
	return wire.NewRule(wire.ProtoTCP, lo4, first, last, 80, wire.FlagWeak)
}

// The forwarder stops binding at the first rule none of whose ports
// binds, weak or not. A weak rule that binds nothing would silence every
// later rule of every client: the update that adds it is a socket fail,
// rolled back, and the other rules listen again.
func TestWeakRuleWithNoPort(t *testing.T) {
	ports := make([]uint16, 5)
	for i := range ports {
		ports[i] = freePort(t)
	}
	other, taken, later := ports[0], ports[1], ports[2]
	rangeFirst := ports[3]
	for _, tc := range []struct {
		name   string
		add    []wire.Rule
		fail   []uint16
		status ctlclient.Status
		failed []wire.Rule // this update's failures, in order
	}{
		{"only port taken", []wire.Rule{weakTCP(taken, taken)}, []uint16{taken}, ctlclient.StatusSocketFail, []wire.Rule{weakTCP(taken, taken)}},
		{"weak then strict", []wire.Rule{weakTCP(taken, taken), tcp(later)}, []uint16{taken}, ctlclient.StatusSocketFail,
			[]wire.Rule{weakTCP(taken, taken), tcp(later)}},
		// A weak rule with one port of two bound is what weak means: fine.
		{"one port of two taken", []wire.Rule{weakTCP(rangeFirst, rangeFirst+1), tcp(later)}, []uint16{rangeFirst}, ctlclient.StatusSuccess, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := ctltest.DefaultTables()
			ts[0].Rules = []wire.Rule{tcp(other)}
			s := ctltest.NewServer(t, ts)
			s.FailBind(tc.fail...)
			res, err := newClient(s).Update(context.Background(), add(tc.add...), ctlclient.UpdateOptions{})
			if tc.status == ctlclient.StatusSuccess {
				if err != nil || res.Status != ctlclient.StatusSuccess {
					t.Fatalf("%v %+v", err, res)
				}
				return
			}
			if st := statusOf(t, err); st != tc.status {
				t.Fatalf("status %v: %v", st, err)
			}
			if len(res.Failed) != len(tc.failed) {
				t.Fatalf("failed %v, want %v", res.Failed, tc.failed)
			}
			for i, r := range tc.failed {
				if !res.Failed[i].Rule.Equal(r) {
					t.Fatalf("failed %v, want %v", res.Failed, tc.failed)
				}
			}
			host := s.Tables().Lookup(wire.PifHost)
			if len(host.Rules) != 1 || !host.Rules[0].Equal(tcp(other)) {
				t.Fatalf("not rolled back: %v", host.Rules)
			}
			// A later update by another client binds: nothing blocks it.
			c := newClient(s)
			if res, err := c.Update(context.Background(), add(tcp(later)), ctlclient.UpdateOptions{}); err != nil || res.Status != ctlclient.StatusSuccess {
				t.Fatalf("later rule after the rollback: %v", err)
			}
			v, err := c.Verify(context.Background(), []ctlclient.PifRule{{Pif: wire.PifHost, Rule: tcp(other)}, {Pif: wire.PifHost, Rule: tcp(later)}})
			if err != nil || len(v.NotListening) != 0 || len(v.Missing) != 0 {
				t.Fatalf("after the rollback: %+v %v", v, err)
			}
		})
	}
}

// A socket fail caused by an earlier rule of the table names that rule,
// whether it is another client's or the update's own.
func TestSocketFailNamesBlocker(t *testing.T) {
	pBlock, pMine, pMine2 := freePort(t), freePort(t), freePort(t)
	for _, tc := range []struct {
		name    string
		table   []wire.Rule // other clients' rules
		add     []wire.Rule
		blocker wire.Rule
		mine    bool
		blocked []wire.Rule
	}{
		{"another client's strict rule", []wire.Rule{tcp(pBlock)}, []wire.Rule{tcp(pMine)}, tcp(pBlock), false, []wire.Rule{tcp(pMine)}},
		{"another client's weak rule", []wire.Rule{weakTCP(pBlock, pBlock)}, []wire.Rule{tcp(pMine), tcp(pMine2)}, weakTCP(pBlock, pBlock), false,
			[]wire.Rule{tcp(pMine), tcp(pMine2)}},
		{"the update's own rule", nil, []wire.Rule{weakTCP(pBlock, pBlock), tcp(pMine)}, weakTCP(pBlock, pBlock), true, []wire.Rule{tcp(pMine)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := ctltest.DefaultTables()
			ts[0].Rules = tc.table
			s := ctltest.NewServer(t, ctltest.DefaultTables())
			s.FailBind(pBlock)
			if err := s.Update(ts); err != nil {
				t.Fatal(err)
			}
			_, err := newClient(s).Update(context.Background(), add(tc.add...), ctlclient.UpdateOptions{})
			if st := statusOf(t, err); st != ctlclient.StatusSocketFail {
				t.Fatalf("status %v: %v", st, err)
			}
			var be *ctlclient.BlockedError
			if !errors.As(err, &be) {
				t.Fatalf("%v: no *BlockedError", err)
			}
			if !be.Blocker.Rule.Equal(tc.blocker) || be.Mine != tc.mine || len(be.Blocked) != len(tc.blocked) {
				t.Fatalf("blocked error %+v", be)
			}
			for i, r := range tc.blocked {
				if !be.Blocked[i].Rule.Equal(r) {
					t.Fatalf("blocked %v, want %v", be.Blocked, tc.blocked)
				}
			}
			blocker := ctlclient.PifRule{Pif: wire.PifHost, Rule: tc.blocker}.String()
			for _, want := range []string{"blocked by an earlier rule", blocker, "rolled back"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
			if got := s.Tables().Lookup(wire.PifHost).Rules; len(got) != len(tc.table) {
				t.Fatalf("not rolled back: %v", got)
			}
		})
	}
}

// A failure that is the first in the table has no blocker: the message
// names none.
func TestSocketFailWithoutBlocker(t *testing.T) {
	pOther, pTaken := freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(pOther)}
	s := ctltest.NewServer(t, ts)
	s.FailBind(pTaken)
	_, err := newClient(s).Update(context.Background(), add(tcp(pTaken)), ctlclient.UpdateOptions{})
	if st := statusOf(t, err); st != ctlclient.StatusSocketFail {
		t.Fatalf("status %v: %v", st, err)
	}
	var be *ctlclient.BlockedError
	if errors.As(err, &be) || strings.Contains(err.Error(), "blocked by") {
		t.Fatalf("%v names a blocker", err)
	}
}

// A rule of the caller that another owner's failing rule blocked before
// the update is blocked after its rollback too: that is the state before
// the update, restored, so a socket fail, not a rollback fail.
func TestRollbackKeepsBlockedRule(t *testing.T) {
	pBlock, pKeep, pNew := freePort(t), freePort(t), freePort(t)
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(pBlock), tcp(pKeep)}
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	s.FailBind(pBlock)
	if err := s.Update(ts); err != nil {
		t.Fatal(err)
	}
	res, err := newClient(s).Update(context.Background(), add(tcp(pKeep), tcp(pNew)), ctlclient.UpdateOptions{})
	if st := statusOf(t, err); st != ctlclient.StatusSocketFail {
		t.Fatalf("status %v: %v", st, err)
	}
	var be *ctlclient.BlockedError
	if !errors.As(err, &be) || !be.Blocker.Rule.Equal(tcp(pBlock)) {
		t.Fatalf("%v does not name the blocking rule", err)
	}
	if host := s.Tables().Lookup(wire.PifHost); len(host.Rules) != 2 || host.Contains(tcp(pNew)) {
		t.Fatalf("not rolled back: %v (%+v)", host.Rules, res)
	}
}

// The Step hook ends an update where it is called, as a killed process
// would end: after the tables were sent, nothing is verified; after a
// rollback was sent, nothing more is looked at or reported.
func TestStepHookStops(t *testing.T) {
	stop := errors.New("stop")
	for _, tc := range []struct {
		at    string
		taken bool // the added rule's port cannot bind: a rollback follows
		want  int  // connections the server saw
	}{
		{"update: sent", false, 1},
		{"rollback: sent", true, 3},
	} {
		p := freePort(t)
		s := ctltest.NewServer(t, ctltest.DefaultTables())
		if tc.taken {
			s.FailBind(p)
		}
		c := newClient(s)
		var seen []string
		c.Step = func(name string) error {
			seen = append(seen, name)
			if name == tc.at {
				return stop
			}
			return nil
		}
		res, err := c.Update(context.Background(), add(tcp(p)), ctlclient.UpdateOptions{})
		if !errors.Is(err, stop) || res == nil || res.Status != ctlclient.StatusUnverified {
			t.Fatalf("%s: %v %+v", tc.at, err, res)
		}
		if seen[len(seen)-1] != tc.at {
			t.Fatalf("%s: steps %v", tc.at, seen)
		}
		waitFor(t, func() bool { return s.Stats().Conns == tc.want })
	}
}
