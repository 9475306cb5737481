package cni

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// pastaForwarder is the real pasta, and the real pesto for the rules of
// another client.
type pastaForwarder struct {
	t    testing.TB
	f    *pastatest.Forwarder
	held []io.Closer
}

func (p *pastaForwarder) socket() (string, string) { return p.f.Socket, p.f.PIDFile }
func (p *pastaForwarder) client() func(string, string) *ctlclient.Client {
	return nil
}
func (p *pastaForwarder) tables() (wire.Tables, error) {
	c := &ctlclient.Client{Path: p.f.Socket, Timeout: 10 * time.Second}
	snap, err := c.Read(context.Background())
	if err != nil {
		return nil, err
	}
	return snap.Tables, nil
}

// pestoSpec is r in pesto's notation: the option (-t or -u) and "PORT:TO"
// for a dual-stack rule on any address, "ADDR/PORT:TO" for one address.
func pestoSpec(r wire.Rule) (string, string) {
	opt := "-t"
	if r.Proto == wire.ProtoUDP {
		opt = "-u"
	}
	if r.Flags.Has(wire.FlagDualStack) {
		return opt, fmt.Sprintf("%d:%d", r.First, r.To)
	}
	return opt, fmt.Sprintf("%s/%d:%d", r.ListenAddr().Unmap(), r.First, r.To)
}

func (p *pastaForwarder) foreignAdd(r wire.Rule) bool {
	if r.Flags.Has(wire.FlagWeak) {
		return false // pesto's -t has no notation for a weak rule
	}
	opt, spec := pestoSpec(r)
	if _, err := p.f.TryPesto("-A", opt, spec); err != nil {
		return false
	}
	ts, err := p.tables()
	if err != nil || !ts.Lookup(wire.PifHost).Contains(r) {
		p.t.Fatalf("pesto -A %s %s did not add %s byte for byte (%v)", opt, spec, r, err)
	}
	return true
}

func (p *pastaForwarder) foreignRemove(r wire.Rule) {
	opt, spec := pestoSpec(r)
	if _, err := p.f.TryPesto("-D", opt, spec); err != nil {
		p.t.Fatalf("pesto -D: %v", err)
	}
}

func (p *pastaForwarder) restart() error {
	p.f.Restart(p.t)
	return nil
}

// listening asks each port of r and wants the answer of the server in
// the namespace behind it: bytes flow.
func (p *pastaForwarder) listening(r wire.Rule) error {
	for port := int(r.First); port <= int(r.Last); port++ {
		addr := pastatest.HostPort("127.0.0.1", uint16(port))
		want := modelReply(r.To + uint16(port-int(r.First)))
		ask := pastatest.AskTCP
		if r.Proto == wire.ProtoUDP {
			ask = pastatest.AskUDP
		}
		got, err := ask(context.Background(), addr)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s answered %q, want %q", addr, got, want)
		}
	}
	return nil
}

func modelReply(port uint16) string { return fmt.Sprintf("model %d", port) }

func (p *pastaForwarder) close() {
	p.f.Kill(p.t)
	for _, l := range p.held {
		l.Close()
	}
}

// hold binds 127.0.0.1 at r's port and protocol, unless pasta holds it;
// pasta's binds of it ("::" or 127.0.0.1) then fail.
func (p *pastaForwarder) hold(r wire.Rule) bool {
	addr := pastatest.HostPort("127.0.0.1", r.First)
	var (
		c   io.Closer
		err error
	)
	if r.Proto == wire.ProtoUDP {
		c, err = net.ListenPacket("udp4", addr)
	} else {
		c, err = net.Listen("tcp4", addr)
	}
	if err != nil {
		return false
	}
	p.held = append(p.held, c)
	return true
}

// free does nothing: pasta retries failed binds about once a second by
// itself, so a port freed would start to listen at a moment no sequence
// can place.
func (p *pastaForwarder) free(uint16) bool { return false }

func (p *pastaForwarder) identity() (store.Identity, error) { return readIdentity(p.f.Socket) }

// TestModelRealPasta runs the model against the real pasta and pesto, for
// a bounded number of steps: the faults the stand-in cannot show (pasta's
// own binding, its restart, pesto's encoding) in the same sequences.
func TestModelRealPasta(t *testing.T) {
	base := pastatest.FreePortRange(t, "tcp", modelPorts)
	steps := modelSteps(t, 150)
	seeds := modelSeeds(t, []uint64{101, 102, 103, 104})
	mk := func(t testing.TB) *modelRun {
		dir := t.TempDir()
		f := pastatest.Start(t)
		for _, port := range []uint16{80, 81, 90} {
			pastatest.ServeTCP(t, f.NS, fmt.Sprintf(":%d", port), modelReply(port))
			pastatest.ServeUDP(t, f.NS, fmt.Sprintf(":%d", port), modelReply(port))
		}
		return &modelRun{
			t: t, fwd: &pastaForwarder{t: t, f: f},
			dataDir: dir, st: store.New(filepath.Join(dir, "records")), base: base, timeout: "10s",
			foreign: map[[wire.RuleSize]byte]wire.Rule{}, orphaned: map[[wire.RuleSize]byte]bool{}, damaged: map[int]damage{},
			held: map[uint16]bool{},
		}
	}
	stats := map[string]int{}
	for _, seed := range seeds {
		runModel(t, mk, seed, steps, 90*time.Second, stats)
	}
	t.Logf("model: %d seeds x %d steps against the real pasta (%s); outcomes: %s", len(seeds), steps, pastatest.Version(t), statsText(stats))
}
