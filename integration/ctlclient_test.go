package integration

// Interoperation of pkg/ctlclient with the real pasta and pesto.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

var ctlLo4 = netip.MustParseAddr("127.0.0.1")

func ctlClient(f *pastatest.Forwarder) *ctlclient.Client {
	return &ctlclient.Client{Path: f.Socket, Timeout: 10 * time.Second}
}

func ctlAdd(pif string, rules ...wire.Rule) ctlclient.Planner {
	return func(wire.Tables) ([]wire.Edit, error) { return []wire.Edit{{Pif: pif, Add: rules}}, nil }
}

// pestoRules parses pesto's printout into "PIF|rule" lines.
func pestoRules(out string) []string {
	var rules []string
	pif := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "    "):
			rules = append(rules, pif+"|"+strings.TrimPrefix(line, "    "))
		case strings.HasPrefix(line, "  "):
			pif = strings.TrimSpace(line)
		}
	}
	return rules
}

func tablesRules(ts wire.Tables) []string {
	var rules []string
	for _, t := range ts {
		for _, r := range t.Rules {
			rules = append(rules, t.Name()+"|"+r.String())
		}
	}
	return rules
}

func TestCtlclientReadPrintsAsPesto(t *testing.T) {
	f := pastatest.Start(t)
	p1, p2, p3 := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "udp"), pastatest.FreePortRange(t, "tcp", 3)
	f.Pesto(t, "-A", "-t", strconv.Itoa(int(p1))+":80")
	f.Pesto(t, "-A", "-u", "127.0.0.1/"+strconv.Itoa(int(p2))+":53")
	f.Pesto(t, "-A", "-t", "::1/"+strconv.Itoa(int(p3))+"-"+strconv.Itoa(int(p3+2))+":100-102")
	snap, err := ctlClient(f).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, want := tablesRules(snap.Tables), pestoRules(f.Tables(t))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rules read:\n%s\npesto prints:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(got) != 7 {
		t.Fatalf("%d rules, want 3 added + 4 of SPLICE", len(got))
	}
	if snap.PeerUID != 0 {
		t.Fatalf("peer uid %d, want 0 (pasta --runas 0)", snap.PeerUID)
	}
	// The bytes of `pesto -A -t PORT:80` (docs/wire-protocol.md): listen ::, flags 0x01.
	r := snap.Tables.Lookup(wire.PifHost).Rules[0]
	wantBytes := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p1, p1, 80, wire.FlagDualStack).Append(nil)
	if !bytes.Equal(r.Append(nil), wantBytes) {
		t.Fatalf("rule bytes %x, want %x", r.Append(nil), wantBytes)
	}
}

func TestCtlclientWritesWhatPestoShows(t *testing.T) {
	f := pastatest.Start(t)
	pt, pu := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "udp")
	pastatest.ServeTCP(t, f.NS, ":80", "hello tcp")
	pastatest.ServeUDP(t, f.NS, ":53", "hello udp")
	rules := []wire.Rule{
		wire.NewRule(wire.ProtoTCP, netip.Addr{}, pt, pt, 80, wire.FlagDualStack),
		wire.NewRule(wire.ProtoUDP, ctlLo4, pu, pu, 53, 0),
	}
	res, err := ctlClient(f).Update(context.Background(), ctlAdd(wire.PifHost, rules...), ctlclient.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != ctlclient.StatusSuccess || res.Method != ctlclient.VerifyInodes || len(res.Added) != 2 || len(res.Warnings) != 0 {
		t.Fatalf("result %+v", res)
	}
	shown := pestoRules(f.Tables(t))
	for _, r := range rules {
		if !containsStr(shown, "HOST|"+r.String()) {
			t.Errorf("pesto does not show %q: %q", r, shown)
		}
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", pt), "hello tcp")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("::1", pt), "hello tcp")
	pastatest.MustAnswer(t, "udp", pastatest.HostPort("127.0.0.1", pu), "hello udp")

	// Removing them again, with pesto's view agreeing.
	res, err = ctlClient(f).Update(context.Background(), func(wire.Tables) ([]wire.Edit, error) {
		return []wire.Edit{{Pif: wire.PifHost, Remove: rules}}, nil
	}, ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess || len(res.Removed) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if got := pestoRules(f.Tables(t)); len(got) != 4 {
		t.Fatalf("after removal pesto shows %q", got)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCtlclientKeepsOthersByteForByte(t *testing.T) {
	f := pastatest.Start(t)
	po, pm := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "tcp")
	f.Pesto(t, "-A", "-t", "127.0.0.1%lo/"+strconv.Itoa(int(po))+":8080")
	before := f.ReadTables(t)
	mine := wire.NewRule(wire.ProtoTCP, ctlLo4, pm, pm, 80, 0)
	if _, err := ctlClient(f).Update(context.Background(), ctlAdd(wire.PifHost, mine), ctlclient.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after := f.ReadTables(t)
	// Every table as before, byte for byte, with our rule appended to HOST.
	want := before.Clone()
	want.Lookup(wire.PifHost).Rules = append(want.Lookup(wire.PifHost).Rules, mine)
	if !bytes.Equal(after.AppendServer(nil), want.AppendServer(nil)) {
		t.Fatalf("tables after update:\n%x\nwant:\n%x", after.AppendServer(nil), want.AppendServer(nil))
	}
}

func TestCtlclientOccupiedPortSocketFail(t *testing.T) {
	f := pastatest.Start(t)
	pastatest.ServeTCP(t, f.NS, ":80", "still here")
	pOld, pTaken := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "tcp")
	f.Pesto(t, "-A", "-t", "127.0.0.1/"+strconv.Itoa(int(pOld))+":80")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", pOld), "still here")
	before := f.ReadTables(t)

	taken, err := net.Listen("tcp4", pastatest.HostPort("127.0.0.1", pTaken))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := wire.NewRule(wire.ProtoTCP, ctlLo4, pTaken, pTaken, 80, 0)
	res, err := ctlClient(f).Update(context.Background(), ctlAdd(wire.PifHost, bad), ctlclient.UpdateOptions{})
	var se *ctlclient.StatusError
	if !errors.As(err, &se) || res.Status != ctlclient.StatusSocketFail {
		t.Fatalf("err %v, result %+v; want socket fail", err, res)
	}
	if len(res.Failed) != 1 || !res.Failed[0].Rule.Equal(bad) || len(res.Failed[0].Ports) != 1 || res.Failed[0].Ports[0] != pTaken {
		t.Fatalf("failed %+v", res.Failed)
	}
	t.Log(err)
	if after := f.ReadTables(t); !bytes.Equal(after.AppendServer(nil), before.AppendServer(nil)) {
		t.Fatal("previous tables not restored byte for byte")
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", pOld), "still here")
	v, err := ctlClient(f).Verify(context.Background(), nil)
	if err != nil || len(v.Warnings) != 0 {
		t.Fatalf("after rollback: %v %+v", err, v)
	}
}

func TestCtlclientConflictSafeFail(t *testing.T) {
	f := pastatest.Start(t)
	p := pastatest.FreePort(t, "tcp")
	f.Pesto(t, "-A", "-t", "127.0.0.1/"+strconv.Itoa(int(p))+":80")
	before := f.ReadTables(t)
	res, err := ctlClient(f).Update(context.Background(),
		ctlAdd(wire.PifHost, wire.NewRule(wire.ProtoTCP, ctlLo4, p, p, 81, 0)), ctlclient.UpdateOptions{})
	if res == nil || res.Status != ctlclient.StatusSafeFail {
		t.Fatalf("err %v, result %+v; want safe fail", err, res)
	}
	if !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("message %q", err)
	}
	if after := f.ReadTables(t); !bytes.Equal(after.AppendServer(nil), before.AppendServer(nil)) {
		t.Fatal("tables changed")
	}
}

func TestCtlclientPIDFileAndDeadForwarder(t *testing.T) {
	f := pastatest.Start(t)
	c := ctlClient(f)
	c.PIDFile = f.PIDFile
	v, err := c.Verify(context.Background(), nil)
	if err != nil || v.Method != ctlclient.VerifyInodes {
		t.Fatalf("%v %+v", err, v)
	}
	// A PID file naming another process is not believed: the scan finds pasta.
	wrong := t.TempDir() + "/wrong.pid"
	if err := os.WriteFile(wrong, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	c.PIDFile = wrong
	p := pastatest.FreePort(t, "tcp")
	res, err := c.Update(context.Background(), ctlAdd(wire.PifHost, wire.NewRule(wire.ProtoTCP, ctlLo4, p, p, 80, 0)), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}

	f.Kill(t)
	c.Timeout = 300 * time.Millisecond
	_, err = c.Read(context.Background())
	var ue *ctlclient.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dead forwarder: %v", err)
	}
}

func BenchmarkCtlclientUpdate(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts ctlclient.UpdateOptions
	}{{"verified", ctlclient.UpdateOptions{}}, {"noverify", ctlclient.UpdateOptions{NoVerify: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			f := pastatest.Start(b)
			p := pastatest.FreePort(b, "tcp")
			r := wire.NewRule(wire.ProtoTCP, ctlLo4, p, p, 80, 0)
			add := ctlAdd(wire.PifHost, r)
			del := func(wire.Tables) ([]wire.Edit, error) {
				return []wire.Edit{{Pif: wire.PifHost, Remove: []wire.Rule{r}}}, nil
			}
			c := ctlClient(f)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				plan := add
				if i%2 == 1 {
					plan = del
				}
				if _, err := c.Update(context.Background(), plan, bc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// SPLICE rules listen inside the namespace pasta is attached to: the
// client finds that namespace through pasta's open file and checks there.
func TestCtlclientSpliceVerified(t *testing.T) {
	f := pastatest.Start(t)
	q1, q2 := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "tcp")
	ok := wire.NewRule(wire.ProtoTCP, ctlLo4, q1, q1, q1, 0)
	res, err := ctlClient(f).Update(context.Background(), ctlAdd(wire.PifSplice, ok), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess || len(res.Unchecked) != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	// A port taken inside the namespace: socket fail, rolled back.
	pastatest.ServeTCP(t, f.NS, pastatest.HostPort("127.0.0.1", q2), "in the way")
	before := f.ReadTables(t)
	bad := wire.NewRule(wire.ProtoTCP, ctlLo4, q2, q2, q2, 0)
	res, err = ctlClient(f).Update(context.Background(), ctlAdd(wire.PifSplice, bad), ctlclient.UpdateOptions{})
	if res == nil || res.Status != ctlclient.StatusSocketFail || len(res.Failed) != 1 || res.Failed[0].Pif != wire.PifSplice {
		t.Fatalf("err %v, result %+v; want a socket fail of the SPLICE rule", err, res)
	}
	if after := f.ReadTables(t); !bytes.Equal(after.AppendServer(nil), before.AppendServer(nil)) {
		t.Fatal("previous tables not restored")
	}
}

// TestCtlclientValidationMatchesCtltest sends the same rules to the real
// pasta and to ctltest.Server and checks that both accept or refuse each.
func TestCtlclientValidationMatchesCtltest(t *testing.T) {
	f := pastatest.Start(t)
	p := pastatest.FreePortRange(t, "tcp", 12)
	v4, v6, any6 := ctlLo4, netip.MustParseAddr("::1"), netip.IPv6Unspecified()
	okRule := wire.NewRule(wire.ProtoTCP, v4, p, p+10, 100, wire.FlagWeak)
	target := func(r wire.Rule, a string) wire.Rule { r.Target = wire.To16(netip.MustParseAddr(a)); return r }
	badIf := wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 10, wire.FlagWeak)
	copy(badIf.IfName[:], "0123456789abcdef")
	cases := map[string]wire.Rule{
		"first>last":             wire.NewRule(wire.ProtoTCP, v4, p+11, p+1, 10, wire.FlagWeak),
		"first 0":                wire.NewRule(wire.ProtoTCP, v4, 0, 10, 10, wire.FlagWeak),
		"to 0":                   wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 0, wire.FlagWeak),
		"to overflow":            wire.NewRule(wire.ProtoTCP, v4, p+11, p+11+10, 65530, wire.FlagWeak),
		"to 65535":               wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 65535, wire.FlagWeak),
		"unknown flag":           wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 10, 0x0a),
		"dual-stack non-any":     wire.NewRule(wire.ProtoTCP, v6, p+11, p+11, 10, wire.FlagDualStack|wire.FlagWeak),
		"proto 1":                wire.NewRule(1, v4, p+11, p+11, 10, wire.FlagWeak),
		"multicast target":       target(wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 10, wire.FlagWeak), "224.0.0.1"),
		"broadcast target":       target(wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 10, wire.FlagWeak), "255.255.255.255"),
		"dual-stack target":      target(wire.NewRule(wire.ProtoTCP, any6, p+11, p+11, 10, wire.FlagDualStack|wire.FlagWeak), "::2"),
		"family mismatch":        target(wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 10, wire.FlagWeak), "::2"),
		"v4 target":              target(wire.NewRule(wire.ProtoTCP, v4, p+11, p+11, 10, wire.FlagWeak), "10.0.0.2"),
		"duplicate":              okRule,
		"overlap":                wire.NewRule(wire.ProtoTCP, v4, p+10, p+11, 10, wire.FlagWeak),
		"overlap any4":           wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("0.0.0.0"), p+5, p+5, 1, wire.FlagWeak),
		"overlap dual":           wire.NewRule(wire.ProtoTCP, any6, p+1, p+1, 1, wire.FlagDualStack|wire.FlagWeak),
		"v6 any vs v4":           wire.NewRule(wire.ProtoTCP, any6, p+1, p+1, 1, wire.FlagWeak),
		"udp same ports":         wire.NewRule(wire.ProtoUDP, v4, p, p+10, 100, wire.FlagWeak),
		"other v4 address":       wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.2"), p, p, 1, wire.FlagWeak),
		"interface unterminated": badIf,
	}
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	real, fake := ctlClient(f), &ctlclient.Client{Path: s.Path, Timeout: 5 * time.Second}
	for _, c := range []*ctlclient.Client{real, fake} {
		if _, err := c.Update(context.Background(), ctlAdd(wire.PifHost, okRule), ctlclient.UpdateOptions{NoVerify: true}); err != nil {
			t.Fatal(err)
		}
	}
	accepted := func(c *ctlclient.Client, r wire.Rule) bool {
		t.Helper()
		if _, err := c.Update(context.Background(), ctlAdd(wire.PifHost, r), ctlclient.UpdateOptions{NoVerify: true}); err != nil {
			t.Fatal(err)
		}
		snap, err := c.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		host := snap.Tables.Lookup(wire.PifHost)
		if len(host.Rules) == 1 {
			return r.Equal(okRule) // a duplicate is not re-sent: a no-op
		}
		if _, err := c.Update(context.Background(), func(wire.Tables) ([]wire.Edit, error) {
			return []wire.Edit{{Pif: wire.PifHost, Remove: []wire.Rule{r}}}, nil
		}, ctlclient.UpdateOptions{NoVerify: true}); err != nil {
			t.Fatal(err)
		}
		return true
	}
	for name, r := range cases {
		if a, b := accepted(real, r), accepted(fake, r); a != b {
			t.Errorf("%s (%s): pasta accepts %v, ctltest accepts %v", name, r, a, b)
		}
	}
}
