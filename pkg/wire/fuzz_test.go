package wire_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// FuzzReadServerTables: any stream either fails with a *DecodeError or
// decodes to tables whose encoding is exactly the bytes consumed.
// Seeds: testdata/fuzz/FuzzReadServerTables (real pasta captures and the
// error cases of decode_test.go).
func FuzzReadServerTables(f *testing.F) {
	f.Add(ctltest.DefaultTables().AppendServer(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := bytes.NewReader(b)
		ts, err := wire.ReadServerTables(rd, 0)
		if err != nil {
			var de *wire.DecodeError
			if !errors.As(err, &de) || ts != nil {
				t.Fatalf("error %v (%T) with tables %v", err, err, ts)
			}
			return
		}
		used := b[:len(b)-rd.Len()]
		if got := ts.AppendServer(nil); !bytes.Equal(got, used) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, used)
		}
		for _, tb := range ts {
			if tb.ID == 0 || len(tb.Rules) > wire.MaxRules {
				t.Fatalf("table %d with %d rules", tb.ID, len(tb.Rules))
			}
		}
	})
}

// FuzzReadHello: 20 bytes decode and re-encode exactly; Check never panics.
func FuzzReadHello(f *testing.F) {
	f.Add(wire.DefaultHello().Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := wire.ReadHello(bytes.NewReader(b))
		if err != nil {
			if len(b) >= wire.HelloSize {
				t.Fatalf("%d bytes: %v", len(b), err)
			}
			return
		}
		if !bytes.Equal(h.Append(nil), b[:wire.HelloSize]) {
			t.Fatal("re-encoding differs")
		}
		if err := h.Check(); err == nil && h != wire.DefaultHello() {
			t.Fatalf("accepted %+v", h)
		}
	})
}

// FuzzReadClientTables: a stream read as a server reads it re-encodes to
// the bytes consumed, and the callback sees every header and rule once.
func FuzzReadClientTables(f *testing.F) {
	f.Add(ctltest.DefaultTables().AppendClient(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := bytes.NewReader(b)
		var ts wire.Tables
		err := wire.ReadClientTables(rd, func(id wire.PifID, count uint32, r *wire.Rule) error {
			if r == nil {
				if count > wire.MaxRules {
					t.Fatalf("count %d passed to fn", count)
				}
				ts = append(ts, wire.Table{ID: id})
				return nil
			}
			ts[len(ts)-1].Rules = append(ts[len(ts)-1].Rules, *r)
			return nil
		})
		if err != nil {
			var de *wire.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T)", err, err)
			}
			return
		}
		if got, used := ts.AppendClient(nil), b[:len(b)-rd.Len()]; !bytes.Equal(got, used) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, used)
		}
	})
}

// BenchmarkEncodeDecode255 encodes a full 255-rule table (with SPLICE as
// pasta has it) and decodes it again.
func BenchmarkEncodeDecode255(b *testing.B) {
	ts := ctltest.DefaultTables()
	for i := range wire.MaxRules {
		p := uint16(10000 + i)
		ts[0].Rules = append(ts[0].Rules, wire.NewRule(wire.ProtoTCP, netip.MustParseAddr("127.0.0.1"), p, p, 80, 0))
	}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = ts.AppendServer(buf[:0])
		got, err := wire.ReadServerTables(bytes.NewReader(buf), 0)
		if err != nil || len(got[0].Rules) != wire.MaxRules {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
