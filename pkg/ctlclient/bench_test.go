package ctlclient_test

import (
	"context"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// BenchmarkVerify10000 verifies one rule of 10,000 ports (127.0.0.1,
// 11000-20999, TCP) that the in-process server holds: the tables read
// back, the forwarder found through its fd table (which then holds more
// than 10,000 sockets) and every port's listener checked.
func BenchmarkVerify10000(b *testing.B) {
	r := wire.NewRule(wire.ProtoTCP, lo4, 11000, 20999, 11000, 0)
	ts := ctltest.DefaultTables()
	ts.Lookup(wire.PifHost).Rules = []wire.Rule{r}
	s := ctltest.NewServer(b, ts)
	if err := s.Stats().LastErr; err != nil {
		b.Fatalf("binding 127.0.0.1:11000-20999: %v", err)
	}
	c := newClient(s)
	want := []ctlclient.PifRule{{Pif: wire.PifHost, Rule: r}}
	for b.Loop() {
		v, err := c.Verify(context.Background(), want)
		if err != nil || len(v.NotListening) != 0 || len(v.Missing) != 0 || v.Method != ctlclient.VerifyInodes {
			b.Fatalf("%+v %v", v, err)
		}
	}
}
