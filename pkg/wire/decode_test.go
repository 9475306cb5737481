package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

func hello(magic string, version, pifSize, ifSize uint32) []byte {
	h := wire.Hello{Version: version, PifNameSize: pifSize, IfNameSize: ifSize}
	copy(h.Magic[:], magic)
	return h.Append(nil)
}

// header encodes one server table header by hand (name unterminated if
// it fills the field).
func header(id byte, name string, caps, count uint32) []byte {
	b := []byte{id}
	var n [wire.PifNameSize]byte
	copy(n[:], name)
	b = append(b, n[:]...)
	b = binary.BigEndian.AppendUint32(b, caps)
	return binary.BigEndian.AppendUint32(b, count)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestHelloMismatch(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		b           []byte
		msg         []string
	}{
		{"wrong magic", "magic", hello("basil:x\x00", 2, 128, 16), []string{`"basil:x\x00"`}},
		{"version 0 (experimental)", "version", hello("basil:s\x00", 0, 128, 16), []string{"version 0", "supports [2]"}},
		{"version 1 (dropped)", "version", hello("basil:s\x00", 1, 128, 16), []string{"version 1", "[2]"}},
		{"version 3 (newer)", "version", hello("basil:s\x00", 3, 128, 16), []string{"version 3", "[2]"}},
		{"pif name size", "pif name size", hello("basil:s\x00", 2, 64, 16), []string{"64", "128"}},
		{"interface name size", "interface name size", hello("basil:s\x00", 2, 128, 32), []string{"32", "16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := wire.ReadHello(bytes.NewReader(tc.b))
			if err != nil {
				t.Fatal(err)
			}
			err = h.Check()
			var me *wire.MismatchError
			if !errors.As(err, &me) || me.Field != tc.field {
				t.Fatalf("got %v, want a mismatch of %s", err, tc.field)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q lacks %q", err, m)
				}
			}
		})
	}
	if err := wire.DefaultHello().Check(); err != nil {
		t.Fatal(err)
	}
}

func TestServerTablesErrors(t *testing.T) {
	r := ctltest.DefaultTables()[1].Rules[0].Append(nil)
	for _, tc := range []struct {
		name     string
		b        []byte
		step     string // DecodeError.Step contains this
		offset   int64
		msg      string
		truncate bool
	}{
		{"duplicate id", cat(header(1, "HOST", 0x3f, 0), header(1, "OTHER", 0x3f, 0), []byte{0}), "header of pif 1 (OTHER)", 20 + 137, "duplicate pif id 1", false},
		{"duplicate name", cat(header(1, "HOST", 0x3f, 0), header(3, "HOST", 0x3f, 0), []byte{0}), "header of pif 3 (HOST)", 20 + 137, `duplicate pif name "HOST"`, false},
		{"unterminated name", cat(header(1, strings.Repeat("N", 128), 0x3f, 0), []byte{0}), "header of pif 1", 20, "not NUL-terminated", false},
		{"count over 255", cat(header(1, "HOST", 0x3f, 256), []byte{0}), "header of pif 1 (HOST)", 20, "rule count 256 is over the limit of 255", false},
		{"huge count", cat(header(1, "HOST", 0x3f, 0xffffffff)), "header of pif 1 (HOST)", 20, "4294967295", false},
		{"empty", nil, "pif id of table 0", 20, "got 0 of 1 bytes", true},
		{"truncated header", header(1, "HOST", 0x3f, 0)[:50], "header of pif 1", 21, "got 49 of 136", true},
		{"truncated rule", cat(header(3, "SPLICE", 0x3f, 2), r, r[:10]), "rule 2 of 2 of pif 3 (SPLICE)", 20 + 137 + 56, "got 10 of 56", true},
		{"no terminator", cat(header(3, "SPLICE", 0x3f, 1), r), "pif id of table 1", 20 + 137 + 56, "got 0 of 1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := wire.ReadServerTables(bytes.NewReader(tc.b), wire.HelloSize)
			var de *wire.DecodeError
			if !errors.As(err, &de) || ts != nil {
				t.Fatalf("got %v, %v; want a *DecodeError", ts, err)
			}
			if !strings.Contains(de.Step, tc.step) || de.Offset != tc.offset || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got step %q offset %d %q; want %q at %d with %q", de.Step, de.Offset, err, tc.step, tc.offset, tc.msg)
			}
			if errors.Is(err, wire.ErrTruncated) != tc.truncate {
				t.Fatalf("truncation %v: %v", tc.truncate, err)
			}
		})
	}
}

// A 0 ends the list: what follows is not read.
func TestServerTablesStopAtZero(t *testing.T) {
	rd := bytes.NewReader(cat(header(1, "HOST", 0x3f, 0), []byte{0}, []byte("next")))
	ts, err := wire.ReadServerTables(rd, 0)
	if err != nil || len(ts) != 1 || rd.Len() != 4 {
		t.Fatalf("%v %v left %d", ts, err, rd.Len())
	}
}

// Truncation of the hello itself.
func TestHelloTruncated(t *testing.T) {
	_, err := wire.ReadHello(bytes.NewReader(wire.DefaultHello().Append(nil)[:7]))
	var de *wire.DecodeError
	if !errors.As(err, &de) || !errors.Is(err, wire.ErrTruncated) || de.Step != "server hello" || !strings.Contains(err.Error(), "got 7 of 20") {
		t.Fatal(err)
	}
}

// Nothing is allocated for a claimed count before its rules arrive: a
// header claiming 255 rules (14 KiB) and then nothing costs a few hundred
// bytes.
func TestNoAllocationForClaimedCount(t *testing.T) {
	b := header(1, "HOST", 0x3f, 255)
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := wire.ReadServerTables(bytes.NewReader(b), 0); !errors.Is(err, wire.ErrTruncated) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2048 {
		t.Fatalf("%d bytes allocated per read of a header claiming 255 rules", per)
	}
}

func TestClientTablesErrors(t *testing.T) {
	r := ctltest.DefaultTables()[1].Rules[0].Append(nil)
	count := func(id byte, n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{id}, n) }
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"count over 255", cat(count(1, 256), []byte{0}), "rule count 256"},
		{"truncated count", count(1, 1)[:3], "got 2 of 4"},
		{"truncated rule", cat(count(1, 1), r[:55]), "got 55 of 56"},
		{"no terminator", cat(count(1, 1), r), "pif id of client table 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wire.ReadClientTables(bytes.NewReader(tc.b), func(wire.PifID, uint32, *wire.Rule) error { return nil })
			var de *wire.DecodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	// A repeated id is read as the forwarder reads it: a second block for
	// the same table.
	var ids []wire.PifID
	if err := wire.ReadClientTables(bytes.NewReader(cat(count(1, 1), r, count(1, 1), r, []byte{0})), func(id wire.PifID, _ uint32, rule *wire.Rule) error {
		if rule == nil {
			ids = append(ids, id)
		}
		return nil
	}); err != nil || len(ids) != 2 {
		t.Fatalf("repeated id: %v %v", ids, err)
	}

	// fn's error stops the read at once and comes back as is.
	stop := errors.New("stop")
	calls := 0
	err := wire.ReadClientTables(bytes.NewReader(cat(count(1, 2), r, r, []byte{0})), func(_ wire.PifID, _ uint32, rule *wire.Rule) error {
		calls++
		if rule != nil {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Fatalf("%v after %d calls", err, calls)
	}
}
