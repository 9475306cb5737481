package modeltest

import (
	"context"
	"fmt"
	"io"
	"net"
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

// Pasta makes worlds around a fresh real pasta each, with servers in its
// namespace on the container ports of the mappings and of other clients'
// rules that answer with their port (see listening), the mappings on the
// Ports ports from base.
func Pasta(base uint16) World {
	return func(t testing.TB) *Model {
		return newModel(t, base, "10s", func() forwarder {
			f := pastatest.Start(t)
			for _, port := range []uint16{80, 81, 90} {
				pastatest.ServeTCP(t, f.NS, fmt.Sprintf(":%d", port), modelReply(port))
				pastatest.ServeUDP(t, f.NS, fmt.Sprintf(":%d", port), modelReply(port))
			}
			return &pastaForwarder{t: t, f: f}
		})
	}
}
