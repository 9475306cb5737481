package wire

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Sizes and limits of protocol version 2.
const (
	HelloSize   = 20  // bytes of the server hello
	PifNameSize = 128 // bytes of a pif name, NUL included
	IfNameSize  = 16  // bytes of an interface name (IFNAMSIZ)
	MaxRules    = 255 // rules in one pif table
	// MaxListenPorts is how many listening ports one pif may hold.
	MaxListenPorts = 327680
)

// Magic opens the server hello.
var Magic = [8]byte{'b', 'a', 's', 'i', 'l', ':', 's', 0}

// Version2 is the protocol version this package speaks.
const Version2 uint32 = 2

// SupportedVersions lists the versions a client built from this package
// implements. Version 0 is reserved for experiments and version 1 was
// dropped without compatibility, so neither is here.
var SupportedVersions = []uint32{Version2}

// Hello is the server's 20-byte greeting.
type Hello struct {
	Magic       [8]byte
	Version     uint32
	PifNameSize uint32
	IfNameSize  uint32
}

// DefaultHello is what a version 2 server sends.
func DefaultHello() Hello {
	return Hello{Magic: Magic, Version: Version2, PifNameSize: PifNameSize, IfNameSize: IfNameSize}
}

// Append appends the 20-byte encoding of h to b.
func (h Hello) Append(b []byte) []byte {
	b = append(b, h.Magic[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	b = binary.BigEndian.AppendUint32(b, h.PifNameSize)
	return binary.BigEndian.AppendUint32(b, h.IfNameSize)
}

// ParseHello decodes a hello from exactly HelloSize bytes. It does not
// judge it: see Check.
func ParseHello(b []byte) (Hello, error) {
	if len(b) != HelloSize {
		return Hello{}, fmt.Errorf("hello is %d bytes, want %d", len(b), HelloSize)
	}
	var h Hello
	copy(h.Magic[:], b[:8])
	h.Version = binary.BigEndian.Uint32(b[8:])
	h.PifNameSize = binary.BigEndian.Uint32(b[12:])
	h.IfNameSize = binary.BigEndian.Uint32(b[16:])
	return h, nil
}

// Check reports a *MismatchError when h is not a hello this package can
// speak to: wrong magic, an unsupported version, or name sizes other than
// the ones it was built for.
func (h Hello) Check() error {
	switch {
	case h.Magic != Magic:
		return &MismatchError{Field: "magic", Got: fmt.Sprintf("%q", h.Magic[:]), Want: fmt.Sprintf("%q", Magic[:])}
	case !slices.Contains(SupportedVersions, h.Version):
		return &MismatchError{Field: "version", Got: fmt.Sprint(h.Version), Want: fmt.Sprint(SupportedVersions)}
	case h.PifNameSize != PifNameSize:
		return &MismatchError{Field: "pif name size", Got: fmt.Sprint(h.PifNameSize), Want: fmt.Sprint(PifNameSize)}
	case h.IfNameSize != IfNameSize:
		return &MismatchError{Field: "interface name size", Got: fmt.Sprint(h.IfNameSize), Want: fmt.Sprint(IfNameSize)}
	}
	return nil
}

// MismatchError says the server speaks a protocol this client does not:
// a wrong magic, version or name size. Nothing was sent to the server.
type MismatchError struct {
	Field string // "magic", "version", "pif name size" or "interface name size"
	Got   string // what the server announced
	Want  string // what this client supports
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("protocol mismatch: server announced %s %s, this client supports %s", e.Field, e.Got, e.Want)
}
