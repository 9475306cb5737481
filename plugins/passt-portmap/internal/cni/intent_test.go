package cni

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// hostRule is the rule ADD makes of a TCP mapping with hostIP "".
func hostRule(host, ctr uint16) wire.Rule {
	return wire.NewRule(wire.ProtoTCP, netip.IPv6Unspecified(), host, host, ctr, wire.FlagDualStack)
}

// addToHost puts r into the server's HOST table, as another client
// (pesto, or a run of the plugin that died) would.
func (b *bench) addToHost(r wire.Rule) {
	b.t.Helper()
	ts := b.srv.Tables()
	h := ts.Lookup(wire.PifHost)
	*h = h.Apply(wire.Edit{Pif: wire.PifHost, Add: []wire.Rule{r}})
	if err := b.srv.Update(ts); err != nil {
		b.t.Fatal(err)
	}
}

// serverIdentity is the identity of the bench's forwarder, as a record
// of rules sent to it names it.
func (b *bench) serverIdentity() *store.Identity {
	b.t.Helper()
	snap, err := (&ctlclient.Client{Path: b.srv.Path}).Read(context.Background())
	if err != nil || !snap.Identity.Known() {
		b.t.Fatalf("identity of the forwarder: %+v, %v", snap, err)
	}
	id := snap.Identity
	return &store.Identity{PeerPID: id.PeerPID, Dev: id.Dev, Ino: id.Ino, Born: id.Born}
}

// writeRecord stores rec for container cid, as a run of the plugin would.
func (b *bench) writeRecord(cid string, rec *store.Record) {
	b.t.Helper()
	key := store.Key{Network: b.network, ContainerID: cid, IfName: "eth0"}
	rec.Network, rec.ContainerID, rec.IfName = key.Network, key.ContainerID, key.IfName
	l, err := store.New(filepath.Join(b.dataDir, "records")).Lock(context.Background(), key)
	if err != nil {
		b.t.Fatal(err)
	}
	defer l.Unlock()
	if err := l.Write(rec); err != nil {
		b.t.Fatal(err)
	}
}

// A rule that another client put into the table, byte for byte what a
// container's mapping asks for, is not taken over: ADD is refused with
// 100 (as the forwarder refuses a duplicate), records nothing, and the
// rule stays; a DEL of that container leaves it alone.
func TestAddDoesNotAdoptOthersRule(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 1)
	b.addToHost(hostRule(p, 80))
	conf := b.conf("", tcp(p, 80))
	b.mustFail("ADD", "c1", conf, 100, "does not own it", rule("TCP", p, 80), "entry 0")
	if r := b.record("c1"); r == nil || len(r.Rules) != 0 || len(r.Pending) != 0 {
		t.Fatalf("record after a refused ADD: %+v, want one that owns nothing", r)
	}
	// The runtime's DEL after the failed ADD, with the mappings.
	b.must("DEL", "c1", conf)
	b.wantHost(rule("TCP", p, 80))
	if r := b.record("c1"); r != nil {
		t.Fatalf("record after DEL: %+v", r)
	}
}

// A run that died after the forwarder took its rules but before it
// recorded them owning left them as pending in the record: the next ADD
// adopts them (no conflict, no second copy) and owns them.
func TestAddAdoptsWhatADeadRunLeft(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	b.addToHost(hostRule(p, 80))
	b.writeRecord("c1", &store.Record{Socket: b.srv.Path, Identity: b.serverIdentity(),
		Pending: []store.OwnedRule{{Pif: wire.PifHost, Rule: hostRule(p, 80)}, {Pif: wire.PifHost, Rule: hostRule(p+1, 81)}}})
	b.must("ADD", "c1", b.conf("", tcp(p, 80)))
	b.wantHost(rule("TCP", p, 80))
	r := b.record("c1")
	if r == nil || len(r.Rules) != 1 || !r.Rules[0].Rule.Equal(hostRule(p, 80)) || len(r.Pending) != 0 {
		t.Fatalf("record after adopting: %+v", r)
	}
}

// DEL removes what a dead run may have left (pending rules present in
// the table) along with the owned rules.
func TestDelRemovesPending(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	b.must("ADD", "c1", b.conf("", tcp(p, 80)))
	b.addToHost(hostRule(p+1, 81))
	r := b.record("c1")
	r.Pending = []store.OwnedRule{{Pif: wire.PifHost, Rule: hostRule(p+1, 81)}}
	b.writeRecord("c1", r)
	b.must("DEL", "c1", b.conf(""))
	b.wantHost()
}

// The intent is written before the transaction and cleared after it: a
// successful ADD leaves no pending rules, and a refused one leaves the
// record as it was before.
func TestIntentCleared(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 3)
	b.must("ADD", "c1", b.conf("", tcp(p, 80)))
	if r := b.record("c1"); r == nil || len(r.Pending) != 0 || len(r.Rules) != 1 {
		t.Fatalf("record after ADD: %+v", r)
	}
	// c2 owns p+2; c1 asking for it too is refused by Plan (a conflict).
	b.must("ADD", "c2", b.conf("", tcp(p+2, 82)))
	b.mustFail("ADD", "c1", b.conf("", tcp(p, 80), tcp(p+2, 90)), 100)
	if r := b.record("c1"); r == nil || len(r.Pending) != 0 || len(r.Rules) != 1 || !r.Rules[0].Rule.Equal(hostRule(p, 80)) {
		t.Fatalf("record after a refused ADD: %+v", r)
	}
}
