package modeltest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// ctltestForwarder is the in-process stand-in for pasta.
type ctltestForwarder struct {
	s *ctltest.Server
}

func (f *ctltestForwarder) socket() (string, string) { return f.s.Path, "" }
func (f *ctltestForwarder) client() func(string, string) *ctlclient.Client {
	return func(socket, pidFile string) *ctlclient.Client {
		// ctltest does not retry binds: nothing to wait for.
		return &ctlclient.Client{Path: socket, PIDFile: pidFile, ListenWait: 10 * time.Millisecond, ListenAddrs: f.s.ListenAddrs}
	}
}
func (f *ctltestForwarder) tables() (wire.Tables, error) { return f.s.Tables(), nil }

// foreignAdd and foreignRemove are one transaction each, as pesto's:
// another client's read-modify-write while the plugin runs.
func (f *ctltestForwarder) foreignAdd(r wire.Rule) bool { return pestoLike(f.s.Path, r, true) }
func (f *ctltestForwarder) foreignRemove(r wire.Rule)   { pestoLike(f.s.Path, r, false) }

// pestoLike adds (or removes) r in one transaction, unverified, as pesto
// does, and reports whether it sent it and it is in effect afterwards.
func pestoLike(socket string, r wire.Rule, add bool) bool {
	c := &ctlclient.Client{Path: socket, Timeout: 5 * time.Second}
	e := wire.Edit{Pif: wire.PifHost, Remove: []wire.Rule{r}}
	if add {
		e = wire.Edit{Pif: wire.PifHost, Add: []wire.Rule{r}}
	}
	sent := false
	_, err := c.Update(context.Background(), func(live wire.Tables) ([]wire.Edit, error) {
		sent = live.Lookup(wire.PifHost).Contains(r) != add
		return []wire.Edit{e}, nil
	}, ctlclient.UpdateOptions{NoVerify: true})
	if err != nil || !sent {
		return false
	}
	snap, err := c.Read(context.Background())
	return err == nil && snap.Tables.Lookup(wire.PifHost).Contains(r) == add
}
func (f *ctltestForwarder) restart() error { return f.s.Restart(ctltest.DefaultTables()) }
func (f *ctltestForwarder) listening(r wire.Rule) error {
	for p := int(r.First); p <= int(r.Last); p++ {
		for _, a := range ctltest.ListenAddrs(r) {
			if err := bound(r.Proto, netip.AddrPortFrom(a, uint16(p))); err != nil {
				return err
			}
		}
	}
	return nil
}

// bound says whether something listens at ap: a TCP connection is
// accepted; a UDP socket is bound there (this process cannot bind it too).
func bound(proto wire.Proto, ap netip.AddrPort) error {
	if proto == wire.ProtoUDP {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("nothing bound at udp %s", ap)
	}
	c, err := net.DialTimeout("tcp", ap.String(), 2*time.Second)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}
func (f *ctltestForwarder) close() { f.s.Close() }

// hold makes binds of port fail (the test process cannot take the port
// itself: the server's sockets are the test process's too), from the next
// switch on, also where the server listens on it now: another process
// may take a port in the moment a switch closes and reopens it, and the
// rule stays in the table, not listening.
func (f *ctltestForwarder) hold(r wire.Rule) bool {
	f.s.FailBind(r.First)
	return true
}
func (f *ctltestForwarder) free(port uint16) bool {
	f.s.AllowBind(port)
	return true
}
func (f *ctltestForwarder) identity() (store.Identity, error) { return readIdentity(f.s.Path) }

// Ctltest makes worlds around a fresh ctltest server each, their
// mappings on the Ports ports from base.
func Ctltest(base uint16) World {
	return func(t testing.TB) *Model {
		return newModel(t, base, "2s", func() forwarder {
			return &ctltestForwarder{s: ctltest.NewServer(t, ctltest.DefaultTables())}
		})
	}
}
