package wire_test

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// The files in testdata/golden are bytes captured from the real forwarder,
// passt 0.0~git20261002.cba3570-1 (protocol version 2):
//
//	empty.hex    hello+tables of `pasta -t none -u none` (HOST empty, SPLICE 4 rules)
//	r1.hex       after `pesto -A -t 18080:80`
//	r2.hex       after `pesto -A -t 127.0.0.1/18082:80`
//	r4.hex       after `pesto -A -t 127.0.0.2%lo/18090:8090` and `-u ::1/19000-19002:100-102`
//	r4.pesto.txt what `pesto` printed for r4
//	sent_add.hex what pesto sent to a server that offered r4, for `pesto -A -t 18083:83`
//	sent_del.hex what pesto sent to a server that offered r4, for `pesto -D -t 127.0.0.1/18082:80`

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, ".hex") {
		return b
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// decodeServer decodes hello and tables and checks that every byte was used.
func decodeServer(t testing.TB, b []byte) (wire.Hello, wire.Tables) {
	t.Helper()
	r := bytes.NewReader(b)
	h, err := wire.ReadHello(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	ts, err := wire.ReadServerTables(r, wire.HelloSize)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left over", r.Len())
	}
	return h, ts
}

func rule(proto wire.Proto, listen string, first, last, to uint16, flags wire.Flags, ifname string) wire.Rule {
	var a netip.Addr
	if listen != "" {
		a = netip.MustParseAddr(listen)
	}
	r := wire.NewRule(proto, a, first, last, to, flags)
	if err := r.SetInterface(ifname); err != nil {
		panic(err)
	}
	return r
}

func TestGoldenServerRoundTrip(t *testing.T) {
	for _, name := range []string{"empty.hex", "r1.hex", "r2.hex", "r4.hex"} {
		t.Run(name, func(t *testing.T) {
			b := golden(t, name)
			h, ts := decodeServer(t, b)
			if got := ts.AppendServer(h.Append(nil)); !bytes.Equal(got, b) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", got, b)
			}
		})
	}
}

func TestGoldenDefaultTables(t *testing.T) {
	_, ts := decodeServer(t, golden(t, "empty.hex"))
	if !bytes.Equal(ts.AppendServer(nil), ctltest.DefaultTables().AppendServer(nil)) {
		t.Fatal("ctltest.DefaultTables differs from a fresh pasta")
	}
}

func TestGoldenRules(t *testing.T) {
	_, ts := decodeServer(t, golden(t, "r4.hex"))
	host := ts.Lookup(wire.PifHost)
	want := []wire.Rule{
		rule(wire.ProtoTCP, "", 18080, 18080, 80, wire.FlagDualStack, ""), // -t 18080:80
		rule(wire.ProtoTCP, "127.0.0.1", 18082, 18082, 80, 0, ""),         // -t 127.0.0.1/18082:80
		rule(wire.ProtoTCP, "127.0.0.2", 18090, 18090, 8090, 0, "lo"),     // -t 127.0.0.2%lo/18090:8090
		rule(wire.ProtoUDP, "::1", 19000, 19002, 100, 0, ""),              // -u ::1/19000-19002:100-102
	}
	if host == nil || len(host.Rules) != len(want) {
		t.Fatalf("HOST %+v", host)
	}
	for i, w := range want {
		if !host.Rules[i].Equal(w) {
			t.Errorf("rule %d: got %x want %x", i, host.Rules[i].Append(nil), w.Append(nil))
		}
	}
	// docs/wire-protocol.md's two examples, field by field.
	r0, r1 := host.Rules[0], host.Rules[1]
	if !r0.ListenAny() || r0.Flags != 0x01 || r0.Proto != 6 || r0.First != 18080 || r0.Last != 18080 || r0.To != 80 {
		t.Errorf("rule 0 %+v", r0)
	}
	if r1.Listen != netip.MustParseAddr("::ffff:127.0.0.1") || r1.Flags != 0 {
		t.Errorf("rule 1 %+v", r1)
	}
}

// TestGoldenPrintsAsPesto: Rule.String gives pesto's lines, byte for byte.
func TestGoldenPrintsAsPesto(t *testing.T) {
	_, ts := decodeServer(t, golden(t, "r4.hex"))
	var b strings.Builder
	b.WriteString("passt/pasta configuration (cap.sock)\n")
	for _, tb := range ts {
		b.WriteString("  " + tb.Name() + "\n")
		for _, r := range tb.Rules {
			b.WriteString("    " + r.String() + "\n")
		}
	}
	want := string(golden(t, "r4.pesto.txt"))
	if got := b.String(); strings.TrimRight(got, "\n") != strings.TrimRight(want, "\n") {
		t.Fatalf("got:\n%q\nwant:\n%q", got, want)
	}
}

// TestGoldenClientBytes: the client encoding is what pesto sends.
func TestGoldenClientBytes(t *testing.T) {
	_, ts := decodeServer(t, golden(t, "r4.hex"))
	added := ts.Clone()
	*added.Lookup(wire.PifHost) = added.Lookup(wire.PifHost).Apply(wire.Edit{Pif: wire.PifHost,
		Add: []wire.Rule{rule(wire.ProtoTCP, "", 18083, 18083, 83, wire.FlagDualStack, "")}})
	if got, want := added.AppendClient(nil), golden(t, "sent_add.hex"); !bytes.Equal(got, want) {
		t.Errorf("add: got %x\nwant %x", got, want)
	}
	deleted := ts.Clone()
	*deleted.Lookup(wire.PifHost) = deleted.Lookup(wire.PifHost).Apply(wire.Edit{Pif: wire.PifHost,
		Remove: []wire.Rule{rule(wire.ProtoTCP, "127.0.0.1", 18082, 18082, 80, 0, "")}})
	if got, want := deleted.AppendClient(nil), golden(t, "sent_del.hex"); !bytes.Equal(got, want) {
		t.Errorf("delete: got %x\nwant %x", got, want)
	}
	// And the server-side reader takes pesto's bytes as sent.
	var n int
	err := wire.ReadClientTables(bytes.NewReader(golden(t, "sent_add.hex")), func(id wire.PifID, count uint32, r *wire.Rule) error {
		if r != nil {
			n++
		}
		return nil
	})
	if err != nil || n != 5+4 {
		t.Fatalf("ReadClientTables: %d rules, %v", n, err)
	}
}
