package cni

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// stopAt runs verb for cid as callArgs does, but stops it at the named
// step, as if its process had been killed there. It reports whether the
// verb reached that step, and the verb's error otherwise.
func (b *bench) stopAt(step, verb, cid string, conf []byte) (bool, error) {
	b.t.Helper()
	reached := false
	stop := errors.New("stopped")
	p := &Plugin{Stdout: &bytes.Buffer{}, Stderr: &b.stderr, Client: b.client, StopAt: func(s string) error {
		if s == step {
			reached = true
			return stop
		}
		return nil
	}}
	args := &skel.CmdArgs{ContainerID: cid, Netns: "/var/run/netns/" + cid, IfName: "eth0", Path: "/opt/cni/bin", StdinData: conf}
	fn := map[string]func(*skel.CmdArgs) error{"ADD": p.add, "DEL": p.del}[verb]
	err := fn(args)
	if reached {
		return true, nil
	}
	return false, err
}

// An ADD killed after it wrote its intent, before sending, leaves pending
// only rules that were absent from the table: a rule another client holds
// byte for byte is refused before any intent is written, so the DEL after
// the killed ADD does not take that rule for this attachment's.
func TestKilledAddClaimsNoOthersRule(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	b.addToHost(hostRule(p, 80))
	conf := b.conf("", tcp(p, 80), tcp(p+1, 80))
	if stopped, err := b.stopAt("add: intent written", "ADD", "c1", conf); stopped || err == nil {
		t.Fatalf("ADD of another client's rule reached its intent (stopped %v) or succeeded (%v)", stopped, err)
	}
	if r := b.record("c1"); r != nil && len(r.Pending) != 0 {
		t.Fatalf("a refused ADD left pending rules: %+v", r.Pending)
	}
	b.must("DEL", "c1", conf)
	b.wantHost(rule("TCP", p, 80))

	// Killed after the intent of a rule that was free: it alone is
	// pending, and the DEL after removes nothing else.
	conf = b.conf("", tcp(p+1, 80))
	if stopped, err := b.stopAt("add: intent written", "ADD", "c2", conf); !stopped {
		t.Fatalf("ADD did not reach its intent: %v", err)
	}
	r := b.record("c2")
	if r == nil || len(r.Pending) != 1 || !r.Pending[0].Rule.Equal(hostRule(p+1, 80)) {
		t.Fatalf("record after a killed ADD: %+v", r)
	}
	b.must("DEL", "c2", conf)
	b.wantHost(rule("TCP", p, 80))
}

// A forwarder restarted since ADD lost the attachment's rules; a rule
// byte for byte the same that another client added to the new one is
// that client's: DEL leaves it, and ADD does not adopt it (100).
func TestRestartedForwarderRulesNotOurs(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	conf := b.conf("", tcp(p, 80))
	b.must("ADD", "c1", conf)
	if err := b.srv.Restart(ctltest.DefaultTables()); err != nil {
		t.Fatal(err)
	}
	b.addToHost(hostRule(p, 80))
	b.mustFail("ADD", "c1", conf, 100, "does not own it")
	b.must("DEL", "c1", conf)
	b.wantHost(rule("TCP", p, 80))
	if !strings.Contains(b.stderr.String(), "was restarted") {
		t.Errorf("stderr does not say why the rule stayed: %s", b.stderr.String())
	}
	// Without a restart, the record's rules are the attachment's.
	b.must("ADD", "c2", b.conf("", tcp(p+1, 80)))
	b.must("DEL", "c2", b.conf("", tcp(p+1, 80)))
	b.wantHost(rule("TCP", p, 80))
}

// CHECK of an attachment whose rule does not listen because an earlier
// rule of the table does not names that rule; the 101 of an ADD behind it
// does too, and a weak mapping whose only port cannot bind is a 101.
func TestBlockingRuleNamed(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 3)
	conf := b.conf("", tcp(p, 80))
	b.must("ADD", "c1", conf)
	// Another client's rule, first in the table, on a port that cannot bind.
	b.srv.FailBind(p + 1)
	ts := b.srv.Tables()
	h := ts.Lookup(wire.PifHost)
	h.Rules = append([]wire.Rule{hostRule(p+1, 90)}, h.Rules...)
	if err := b.srv.Update(ts); err != nil {
		t.Fatal(err)
	}
	blocker := "blocked by the earlier rule HOST " + rule("TCP", p+1, 90)
	b.mustFail("CHECK", "c1", conf, 104, "not listening: HOST "+rule("TCP", p, 80), blocker)
	b.mustFail("ADD", "c2", b.conf("", tcp(p+2, 80)), 101, "blocked by an earlier rule of the table, another owner's HOST "+rule("TCP", p+1, 90))

	// A weak mapping whose only port cannot bind: 101, rolled back, and
	// the attachments after it still listen.
	b = newBench(t)
	b.srv.FailBind(p + 1)
	conf = b.conf("", tcp(p, 80))
	b.must("ADD", "c1", conf)
	b.mustFail("ADD", "c2", b.conf(`"weak": true`, tcp(p+1, 81)), 101, "rolled back", "weak rule HOST "+rule("TCP", p+1, 81), "binds none of its ports")
	b.must("ADD", "c3", b.conf("", tcp(p+2, 80)))
	b.must("CHECK", "c1", conf)
	b.must("CHECK", "c3", b.conf("", tcp(p+2, 80)))
}
