package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestPluginWeakRuleCannotBlock: pasta stops binding at the first rule none
// of whose ports binds, weak or not. A weak mapping whose only port is held
// by another process is refused (101, rolled back), and the rules around it
// keep listening. A rule that another client (pesto) put in the table and
// that does not listen blocks the rules after it: the 101 of an ADD behind
// it names it.
func TestPluginWeakRuleCannotBlock(t *testing.T) {
	r := newPlugRun(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", "w80")
	p := pastatest.FreePortRange(t, "tcp", 4)
	addr := func(port uint16) string { return pastatest.HostPort("127.0.0.1", port) }
	held, err := net.Listen("tcp4", addr(p+1))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	r.must("ADD", "pp-w1", r.conf("", [2]uint16{p, 80}))
	before := r.host()
	r.mustFail("ADD", "pp-w2", r.conf(`"weak":true`, [2]uint16{p + 1, 80}), 101,
		fmt.Sprintf("host ports %d not listening", p+1), "rolled back", "binds none of its ports")
	if got := r.host(); got != before {
		t.Fatalf("after the refused weak rule:\n got %s\nwant %s", got, before)
	}
	r.must("DEL", "pp-w2", r.conf(`"weak":true`, [2]uint16{p + 1, 80}))
	r.must("ADD", "pp-w3", r.conf("", [2]uint16{p + 2, 80}))
	pastatest.MustAnswer(t, "tcp", addr(p), "w80")
	pastatest.MustAnswer(t, "tcp", addr(p+2), "w80")
	r.must("CHECK", "pp-w1", r.conf("", [2]uint16{p, 80}))
	r.must("CHECK", "pp-w3", r.conf("", [2]uint16{p + 2, 80}))

	// Another client's rule on the held port: pasta keeps it and binds
	// nothing after it.
	blocker := fmt.Sprintf("HOST TCP [127.0.0.1]:%d  =>  80", p+1)
	r.f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:80", p+1))
	r.mustFail("ADD", "pp-w4", r.conf("", [2]uint16{p + 3, 80}), 101,
		fmt.Sprintf("host ports %d not listening", p+3), "rolled back", "blocked by an earlier rule of the table, another owner's "+blocker)
	if got := r.host(); strings.Contains(got, fmt.Sprintf(":%d ", p+3)) {
		t.Fatalf("the refused rule stayed: %s", got)
	}
	r.must("DEL", "pp-w4", r.conf("", [2]uint16{p + 3, 80}))
	pastatest.MustAnswer(t, "tcp", addr(p), "w80")
	pastatest.MustAnswer(t, "tcp", addr(p+2), "w80")

	// Without it, the same ADD succeeds.
	r.f.Pesto(t, "-D", "-t", fmt.Sprintf("127.0.0.1/%d:80", p+1))
	r.must("ADD", "pp-w4", r.conf("", [2]uint16{p + 3, 80}))
	pastatest.MustAnswer(t, "tcp", addr(p+3), "w80")
}

// TestCtlclientWeakRuleBlocksLater shows the premise on the real pasta: a
// weak rule none of whose ports binds leaves the rules after it unbound,
// and Verify names it as what blocks them.
func TestCtlclientWeakRuleBlocksLater(t *testing.T) {
	f := pastatest.Start(t)
	pastatest.ServeTCP(t, f.NS, ":80", "b80")
	p := pastatest.FreePortRange(t, "tcp", 2)
	held, err := net.Listen("tcp4", pastatest.HostPort("127.0.0.1", p))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	weak := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p, p, 80, wire.FlagDualStack|wire.FlagWeak)
	later := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p+1, p+1, 80, wire.FlagDualStack)
	c := ctlClient(f)
	if _, err := c.Update(context.Background(), ctlAdd(wire.PifHost, weak, later), ctlclient.UpdateOptions{NoVerify: true}); err != nil {
		t.Fatal(err)
	}
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+1), "b80")
	v, err := c.Verify(context.Background(), []ctlclient.PifRule{{Pif: wire.PifHost, Rule: weak}, {Pif: wire.PifHost, Rule: later}})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.NotListening) != 2 || !v.NotListening[0].Rule.Equal(weak) || v.NotListening[1].BlockedBy == nil || !v.NotListening[1].BlockedBy.Rule.Equal(weak) {
		t.Fatalf("not listening: %v", v.NotListening)
	}
}

// TestCtlclientWeakRulePartlyBound: a weak rule with one port of two bound
// does not block the rules after it, on the real pasta; the update that
// adds it succeeds.
func TestCtlclientWeakRulePartlyBound(t *testing.T) {
	f := pastatest.Start(t)
	pastatest.ServeTCP(t, f.NS, ":80", "b80")
	pastatest.ServeTCP(t, f.NS, ":81", "b81")
	p := pastatest.FreePortRange(t, "tcp", 3)
	held, err := net.Listen("tcp4", pastatest.HostPort("127.0.0.1", p))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	weak := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p, p+1, 80, wire.FlagDualStack|wire.FlagWeak)
	later := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p+2, p+2, 80, wire.FlagDualStack)
	res, err := ctlClient(f).Update(context.Background(), ctlAdd(wire.PifHost, weak, later), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+1), "b81") // p+1 goes to 81
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+2), "b80")
}
