package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// groupBench is a forwarder (ctltest), a core and a data directory, and
// the queue of that forwarder held by the test, so that ADDs started
// together wait and then share one batch.
type groupBench struct {
	t    *testing.T
	srv  *ctltest.Server
	core *Core
	o    Options
	lead *store.Lead
}

func newGroupBench(t *testing.T) *groupBench {
	t.Helper()
	srv := ctltest.NewServer(t, ctltest.DefaultTables())
	g := &groupBench{t: t, srv: srv, o: Options{DataDir: t.TempDir(), Socket: srv.Path, Verify: true}}
	g.core = &Core{Client: func(socket, pidFile string) *ctlclient.Client {
		return &ctlclient.Client{Path: socket, PIDFile: pidFile, ListenWait: 10 * time.Millisecond,
			ListenAddrs: func(_ string, r wire.Rule) []netip.Addr { return ctltest.ListenAddrs(r) }}
	}}
	q, err := store.OpenQueue(g.o.DataDir, queueName(srv.Path))
	if err != nil {
		t.Fatal(err)
	}
	if g.lead, err = q.TryLead(); err != nil || g.lead == nil {
		t.Fatalf("take the lead: %v", err)
	}
	return g
}

type addOutcome struct {
	res *Result
	err error
}

// addAll runs the ADD of each port's attachment at once; they wait for
// the lead the test holds until all have posted their requests, then the
// test lets go and they run as one batch.
func (g *groupBench) addAll(ports []int) []addOutcome {
	g.t.Helper()
	dir := queueDir(g.o.DataDir, g.srv.Path)
	// Requests queued before (a test's own) are not these ADDs'.
	before := map[string]bool{}
	if des, err := os.ReadDir(dir); err == nil {
		for _, de := range des {
			before[de.Name()] = true
		}
	}
	out := make([]addOutcome, len(ports))
	var wg sync.WaitGroup
	for i, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := Key{Network: "net", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
			out[i].res, out[i].err = g.core.Add(context.Background(), k, g.o, []Mapping{{HostIP: "127.0.0.1", HostPort: p, ContainerPort: 80}})
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		des, _ := os.ReadDir(dir)
		n := 0
		for _, de := range des {
			if strings.HasSuffix(de.Name(), ".req") && !before[de.Name()] {
				n++
			}
		}
		if n == len(ports) {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%d of %d requests posted", n, len(ports))
		}
		time.Sleep(time.Millisecond)
	}
	g.lead.Release()
	wg.Wait()
	return out
}

func (g *groupBench) rule(p int) wire.Rule {
	return wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), uint16(p), uint16(p), 80, 0)
}

// ADDs that wait together share one transaction: one update of the
// forwarder for all of them, each with its own result and record.
func TestGroupCommitOneTransaction(t *testing.T) {
	g := newGroupBench(t)
	p := freePort(t, 4)
	ports := []int{p, p + 1, p + 2, p + 3}
	before := g.srv.Stats()
	out := g.addAll(ports)
	host := g.srv.Tables().Lookup(wire.PifHost)
	st := recordStore(&g.o)
	for i, o := range out {
		if o.err != nil {
			t.Fatalf("ADD of c%d: %v", i, o.err)
		}
		if len(o.res.Rules) != 1 || !o.res.Rules[0].Rule.Equal(g.rule(ports[i])) || !host.Contains(g.rule(ports[i])) {
			t.Fatalf("ADD of c%d: %+v, table %v", i, o.res, host.Rules)
		}
		rec, err := st.Get(store.Key{Network: "net", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"})
		if err != nil || len(rec.Rules) != 1 || len(rec.Pending) != 0 {
			t.Fatalf("record of c%d: %+v %v", i, rec, err)
		}
	}
	if got := g.srv.Stats().Updates - before.Updates; got != 1 {
		t.Errorf("%d updates of the forwarder for %d ADDs together, want 1", got, len(ports))
	}
	if des, _ := os.ReadDir(queueDir(g.o.DataDir, g.srv.Path)); len(des) != 1 {
		t.Errorf("the queue holds %v after every ADD was answered, want only its leader lock", des)
	}
}

// One ADD of a batch whose port cannot listen fails on its own, rolled
// back (101, naming the port), while the others of the same batch
// succeed and listen; it records nothing, they record their rules.
func TestGroupCommitOwnOutcomes(t *testing.T) {
	g := newGroupBench(t)
	p := freePort(t, 3)
	ports := []int{p, p + 1, p + 2}
	g.srv.FailBind(uint16(p + 1))
	out := g.addAll(ports)
	host := g.srv.Tables().Lookup(wire.PifHost)
	st := recordStore(&g.o)
	for i, o := range out {
		k := store.Key{Network: "net", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
		rec, rerr := st.Get(k)
		if i == 1 {
			d := Describe(o.err, nil)
			if d == nil || d.Kind != KindSocketFail || !strings.Contains(d.Error(), fmt.Sprint(p+1)) {
				t.Fatalf("ADD of the attachment whose port is taken: %v, want a socket fail naming port %d", o.err, p+1)
			}
			if host.Contains(g.rule(ports[i])) {
				t.Errorf("its rule %s stayed in the table", g.rule(ports[i]))
			}
			if rerr == nil && (len(rec.Rules) != 0 || len(rec.Pending) != 0) {
				t.Errorf("its record claims %+v", rec)
			}
			continue
		}
		if o.err != nil {
			t.Fatalf("ADD of c%d, beside the one that failed: %v", i, o.err)
		}
		if !host.Contains(g.rule(ports[i])) || rerr != nil || len(rec.Rules) != 1 {
			t.Fatalf("c%d: in the table %v, record %+v %v", i, host.Contains(g.rule(ports[i])), rec, rerr)
		}
		for _, a := range ctltest.ListenAddrs(g.rule(ports[i])) {
			if !listening(t, netip.AddrPortFrom(a, uint16(ports[i]))) {
				t.Errorf("c%d: %s does not listen", i, a)
			}
		}
	}
}

// A waiter that gives up (its process killed, its ticket closed) before
// a leader took its request is not served: the leader drops the request,
// and adds nothing for it.
func TestGroupCommitWaiterGone(t *testing.T) {
	g := newGroupBench(t)
	p := freePort(t, 2)
	q, err := store.OpenQueue(g.o.DataDir, queueName(g.srv.Path))
	if err != nil {
		t.Fatal(err)
	}
	k := Key{Network: "net", ContainerID: "gone", IfName: "eth0"}
	payload, err := json.Marshal(requestOf(k, &g.o, []Mapping{{HostIP: "127.0.0.1", HostPort: p + 1, ContainerPort: 80}}))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := q.Post(payload)
	if err != nil {
		t.Fatal(err)
	}
	tk.Close() // its poster is gone
	out := g.addAll([]int{p})
	if out[0].err != nil {
		t.Fatal(out[0].err)
	}
	if g.srv.Tables().Lookup(wire.PifHost).Contains(g.rule(p + 1)) {
		t.Fatal("the request of a poster that was gone was served")
	}
	if _, err := recordStore(&g.o).Get(k.storeKey()); err == nil {
		t.Fatal("the request of a poster that was gone left a record")
	}
	if _, err := os.Stat(filepath.Join(queueDir(g.o.DataDir, g.srv.Path), tk.ID+".req")); err == nil {
		t.Fatal("the request of a poster that was gone is still queued")
	}
}

// listening reports whether a TCP connection to ap is accepted.
func listening(t *testing.T, ap netip.AddrPort) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", ap.String(), 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// addForeign adds rules to the forwarder's host table as another client
// would.
func (g *groupBench) addForeign(rules ...wire.Rule) {
	g.t.Helper()
	ts := g.srv.Tables().Clone()
	h := ts.Lookup(wire.PifHost)
	*h = h.Apply(wire.Edit{Pif: wire.PifHost, Add: rules})
	if err := g.srv.Update(ts); err != nil {
		g.t.Fatal(err)
	}
}

// writeRecord stores rec as the record of container cid, as an ADD
// before this one left it.
func (g *groupBench) writeRecord(cid string, rules []wire.PifRule, id *store.Identity) {
	g.t.Helper()
	k := store.Key{Network: "net", ContainerID: cid, IfName: "eth0"}
	l, err := recordStore(&g.o).Lock(context.Background(), k)
	if err != nil {
		g.t.Fatal(err)
	}
	defer l.Unlock()
	rec := &store.Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: g.srv.Path, Rules: rules, Identity: id}
	if err := l.Write(rec); err != nil {
		g.t.Fatal(err)
	}
}

// Each attachment of a batch claims rules only in the forwarder its
// record names: a record of another forwarder (one restarted since) adopts
// nothing and removes nothing there, beside a record of this forwarder
// that adopts its rule and a fresh attachment, all in one transaction.
// c0's record claims a rule that another client now holds byte for byte:
// its ADD is refused and the rule stays. c1's claims such a rule too, and
// its ADD asks for another port: that one is added, the other client's
// rule stays. c3's record names this forwarder: its rule is adopted.
func TestGroupCommitIdentityPerAttachment(t *testing.T) {
	g := newGroupBench(t)
	p := freePort(t, 5)
	snap, err := (&ctlclient.Client{Path: g.srv.Path}).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	here := storeIdentity(snap.Identity)
	if here == nil {
		t.Fatal("the forwarder's identity is unknown")
	}
	before := *here
	before.Born-- // the socket file of a forwarder that was at this path before
	host := func(r wire.Rule) []wire.PifRule { return []wire.PifRule{{Pif: wire.PifHost, Rule: r}} }
	g.addForeign(g.rule(p), g.rule(p+1), g.rule(p+4))
	g.writeRecord("c0", host(g.rule(p)), &before)
	g.writeRecord("c1", host(g.rule(p+1)), &before)
	g.writeRecord("c3", host(g.rule(p+4)), here)
	updates := g.srv.Stats().Updates
	out := g.addAll([]int{p, p + 2, p + 3, p + 4})
	tables := g.srv.Tables().Lookup(wire.PifHost)
	for _, r := range []wire.Rule{g.rule(p), g.rule(p + 1)} {
		if !tables.Contains(r) {
			t.Errorf("another client's rule %s was removed", r)
		}
	}
	if d := Describe(out[0].err, nil); d == nil || d.Kind != KindSafeFail || !strings.Contains(d.Error(), "does not own it") {
		t.Errorf("ADD of c0, whose record's rule went with the forwarder before: %v, want a refusal (the rule there is another client's)", out[0].err)
	}
	st := recordStore(&g.o)
	for i, want := range map[int]wire.Rule{1: g.rule(p + 2), 2: g.rule(p + 3), 3: g.rule(p + 4)} {
		cid := fmt.Sprintf("c%d", i)
		if out[i].err != nil {
			t.Errorf("ADD of %s: %v", cid, out[i].err)
			continue
		}
		rec, err := st.Get(store.Key{Network: "net", ContainerID: cid, IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Rules) != 1 || !rec.Rules[0].Rule.Equal(want) || len(rec.Pending) != 0 || rec.Identity == nil || *rec.Identity != *here {
			t.Errorf("record of %s: %+v, want %s owned on this forwarder (%+v)", cid, rec, want, *here)
		}
		if !tables.Contains(want) {
			t.Errorf("%s: %s is not in the table", cid, want)
		}
	}
	if got := g.srv.Stats().Updates - updates; got > 2 {
		t.Errorf("%d updates for one batch (and c0's refusal), want at most 2", got)
	}
}

// An ADD that waited is told its outcome in its own front end's words:
// the leader that ran it names the mappings for it to fill in.
func TestGroupCommitWaiterWords(t *testing.T) {
	g := newGroupBench(t)
	p := freePort(t, 3)
	ports := []int{p, p + 1, p + 2}
	for _, port := range ports {
		// Another client's rule on the port, to another target.
		g.addForeign(wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), uint16(port), uint16(port), 81, 0))
	}
	out := g.addAll(ports)
	waited := 0
	for i, o := range out {
		var we *waitedError
		if errors.As(o.err, &we) {
			waited++
		}
		d := Describe(o.err, otherDialect{})
		if d == nil || d.Kind != KindSafeFail || !strings.Contains(d.Error(), "port_mappings") ||
			strings.Contains(d.Error(), "portMappings") || strings.ContainsAny(d.Error(), "\x01\x02\x03") {
			t.Errorf("ADD of c%d: %v, want a refusal naming port_mappings", i, d)
		}
	}
	if waited == 0 {
		t.Fatal("no ADD waited for another's batch")
	}
}

// queueDir is the path of the queue's directory of the forwarder at
// socket (the core reaches it through store.OpenQueue).
func queueDir(dataDir, socket string) string {
	return filepath.Join(dataDir, store.QueuesName, queueName(socket))
}
