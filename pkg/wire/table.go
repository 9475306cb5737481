package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PifID numbers a pif in one server. Ids are the server's own numbering;
// names are the stable key. 0 ends a list and is never a pif.
type PifID uint8

// Pif names seen on the real forwarder.
const (
	PifHost   = "HOST"   // inbound: host side to the guest or namespace
	PifSplice = "SPLICE" // outbound: namespace loopback to the host
)

// Caps are the capability bits of one table.
type Caps uint32

// Capability bits.
const (
	CapIPv4   Caps = 0x01
	CapIPv6   Caps = 0x02
	CapTCP    Caps = 0x04
	CapUDP    Caps = 0x08
	CapScan   Caps = 0x10 // port scan ("auto")
	CapIfName Caps = 0x20 // bind to an interface name
)

// Has reports whether all bits of c2 are set in c.
func (c Caps) Has(c2 Caps) bool { return c&c2 == c2 }

// String lists the bits by name, e.g. "IPv4|IPv6|TCP|UDP|scan|ifname".
func (c Caps) String() string {
	var parts []string
	for _, b := range []struct {
		c Caps
		n string
	}{{CapIPv4, "IPv4"}, {CapIPv6, "IPv6"}, {CapTCP, "TCP"}, {CapUDP, "UDP"}, {CapScan, "scan"}, {CapIfName, "ifname"}} {
		if c.Has(b.c) {
			parts = append(parts, b.n)
			c &^= b.c
		}
	}
	if c != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(c)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Table is one pif's forwarding table.
type Table struct {
	ID PifID
	// RawName is the NUL-terminated, NUL-padded name as sent; kept raw so
	// that a server-side encoding reproduces it exactly.
	RawName [PifNameSize]byte
	Caps    Caps
	Rules   []Rule
}

// Name is the pif's name up to its first NUL.
func (t *Table) Name() string {
	if i := bytes.IndexByte(t.RawName[:], 0); i >= 0 {
		return string(t.RawName[:i])
	}
	return string(t.RawName[:])
}

// NewTable builds a table with the given name (shorter than PifNameSize).
func NewTable(id PifID, name string, caps Caps, rules ...Rule) Table {
	t := Table{ID: id, Caps: caps, Rules: rules}
	copy(t.RawName[:PifNameSize-1], name)
	return t
}

// Clone returns a deep copy of t.
func (t Table) Clone() Table {
	t.Rules = append([]Rule(nil), t.Rules...)
	return t
}

// Tables are all of a server's tables, in the order it sent them.
type Tables []Table

// Lookup returns the table called name, or nil.
func (ts Tables) Lookup(name string) *Table {
	for i := range ts {
		if ts[i].Name() == name {
			return &ts[i]
		}
	}
	return nil
}

// Clone returns a deep copy of ts.
func (ts Tables) Clone() Tables {
	out := make(Tables, len(ts))
	for i, t := range ts {
		out[i] = t.Clone()
	}
	return out
}

// AppendServer appends the server's encoding of ts (as sent after the
// hello), with the terminating 0.
func (ts Tables) AppendServer(b []byte) []byte {
	for _, t := range ts {
		b = append(b, byte(t.ID))
		b = append(b, t.RawName[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(t.Caps))
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Rules)))
		for _, r := range t.Rules {
			b = r.Append(b)
		}
	}
	return append(b, 0)
}

// AppendClient appends the client's encoding of ts (every table, by id,
// with its rules), with the terminating 0. The server replaces every table
// with what it receives: leave none out.
func (ts Tables) AppendClient(b []byte) []byte {
	for _, t := range ts {
		b = append(b, byte(t.ID))
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Rules)))
		for _, r := range t.Rules {
			b = r.Append(b)
		}
	}
	return append(b, 0)
}

// DecodeError says where a stream went wrong.
type DecodeError struct {
	Step   string // what was being read, e.g. "rule 3 of pif 1 (HOST)"
	Offset int64  // byte offset of the step in the stream
	Err    error  // what arrived (io.ErrUnexpectedEOF for a truncation)
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s at byte %d: %v", e.Step, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ErrTruncated wraps a stream that ended early.
var ErrTruncated = errors.New("stream ended early")

// reader counts bytes and turns short reads into ErrTruncated.
type reader struct {
	r   io.Reader
	off int64
}

// full fills buf; step names what was being read and is only called on
// an error, so that a successful read formats nothing.
func (rd *reader) full(buf []byte, step func() string) error {
	start := rd.off
	n, err := io.ReadFull(rd.r, buf)
	rd.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: got %d of %d bytes", ErrTruncated, n, len(buf))
		}
		return &DecodeError{Step: step(), Offset: start, Err: err}
	}
	return nil
}

// ReadHello reads and decodes a hello from r. It does not judge it: call
// Hello.Check.
func ReadHello(r io.Reader) (Hello, error) {
	var buf [HelloSize]byte
	rd := reader{r: r}
	if err := rd.full(buf[:], func() string { return "server hello" }); err != nil {
		return Hello{}, err
	}
	return ParseHello(buf[:])
}

// ReadServerTables reads the server's tables (after the hello) up to and
// including the terminating 0. offset is the stream offset of the first
// byte, for error messages (HelloSize after a hello). It refuses an id 0
// inside the list (impossible: 0 ends it), a duplicate id or name, an
// unterminated name and a count over MaxRules, and allocates rules only as
// their bytes arrive.
func ReadServerTables(r io.Reader, offset int64) (Tables, error) {
	rd := reader{r: r, off: offset}
	var ts Tables
	seenID := map[PifID]bool{}
	seenName := map[string]bool{}
	var hdr [1 + PifNameSize + 8]byte
	var rb [RuleSize]byte
	for n := 0; ; n++ {
		if err := rd.full(hdr[:1], func() string { return fmt.Sprintf("pif id of table %d", n) }); err != nil {
			return nil, err
		}
		if hdr[0] == 0 {
			return ts, nil
		}
		id := PifID(hdr[0])
		start := rd.off - 1
		if err := rd.full(hdr[1:], func() string { return fmt.Sprintf("header of pif %d", id) }); err != nil {
			return nil, err
		}
		var t Table
		t.ID = id
		copy(t.RawName[:], hdr[1:1+PifNameSize])
		t.Caps = Caps(binary.BigEndian.Uint32(hdr[1+PifNameSize:]))
		count := binary.BigEndian.Uint32(hdr[1+PifNameSize+4:])
		step := fmt.Sprintf("header of pif %d", id)
		if bytes.IndexByte(t.RawName[:], 0) < 0 {
			return nil, &DecodeError{Step: step, Offset: start, Err: fmt.Errorf("pif name is not NUL-terminated within %d bytes", PifNameSize)}
		}
		name := t.Name()
		step = fmt.Sprintf("header of pif %d (%s)", id, name)
		switch {
		case seenID[id]:
			return nil, &DecodeError{Step: step, Offset: start, Err: fmt.Errorf("duplicate pif id %d", id)}
		case seenName[name]:
			return nil, &DecodeError{Step: step, Offset: start, Err: fmt.Errorf("duplicate pif name %q", name)}
		case count > MaxRules:
			return nil, &DecodeError{Step: step, Offset: start, Err: fmt.Errorf("rule count %d is over the limit of %d", count, MaxRules)}
		}
		seenID[id], seenName[name] = true, true
		for i := uint32(0); i < count; i++ {
			if err := rd.full(rb[:], func() string { return fmt.Sprintf("rule %d of %d of pif %d (%s)", i+1, count, id, name) }); err != nil {
				return nil, err
			}
			rule, _ := ParseRule(rb[:])
			t.Rules = append(t.Rules, rule)
		}
		ts = append(ts, t)
	}
}

// ReadClientTables reads a client's tables up to the terminating 0, as a
// server does, calling fn for each table header and then for each rule as
// it arrives, so a server can validate rule by rule and stop at the first
// bad one (fn's error is returned as is). A nil rule means a table header.
// It refuses counts over MaxRules. Like the forwarder, it accepts an id
// repeated in the list: the real one (checked on passt 0.0~git20261002)
// adds the later block's rules to the same pending table, so the check of
// at most MaxRules per pif is the caller's, as rules arrive.
func ReadClientTables(r io.Reader, fn func(id PifID, count uint32, rule *Rule) error) error {
	rd := reader{r: r}
	var hdr [5]byte
	var rb [RuleSize]byte
	for n := 0; ; n++ {
		if err := rd.full(hdr[:1], func() string { return fmt.Sprintf("pif id of client table %d", n) }); err != nil {
			return err
		}
		if hdr[0] == 0 {
			return nil
		}
		id := PifID(hdr[0])
		start := rd.off - 1
		if err := rd.full(hdr[1:], func() string { return fmt.Sprintf("rule count of client pif %d", id) }); err != nil {
			return err
		}
		count := binary.BigEndian.Uint32(hdr[1:])
		if count > MaxRules {
			return &DecodeError{Step: fmt.Sprintf("client table of pif %d", id), Offset: start, Err: fmt.Errorf("rule count %d is over the limit of %d", count, MaxRules)}
		}
		if err := fn(id, count, nil); err != nil {
			return err
		}
		for i := uint32(0); i < count; i++ {
			if err := rd.full(rb[:], func() string { return fmt.Sprintf("rule %d of %d of client pif %d", i+1, count, id) }); err != nil {
				return err
			}
			rule, _ := ParseRule(rb[:])
			if err := fn(id, count, &rule); err != nil {
				return err
			}
		}
	}
}
