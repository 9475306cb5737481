// Package procnet reads what Linux shows under /proc about sockets: the
// listening UNIX sockets bound to a path (/proc/net/unix), the TCP and UDP
// sockets of a network namespace (/proc/PID/net/{tcp,tcp6,udp,udp6}) and
// the socket inodes a process holds (/proc/PID/fd).
//
// The parsers take the file's bytes, so they can be tested and fuzzed
// without a /proc; the readers around them name the file in their errors.
package procnet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Root is where proc is mounted.
const Root = "/proc"

// Socket states of /proc/net/{tcp,udp}[6] ("st" column).
const (
	StateTCPListen = 0x0a // TCP_LISTEN
	StateUDPBound  = 0x07 // TCP_CLOSE: an unconnected UDP socket
)

// unixAcceptCon is __SO_ACCEPTCON in the Flags column: a listening socket.
const unixAcceptCon = 0x10000

// UnixSocket is one line of /proc/net/unix.
type UnixSocket struct {
	Flags uint32
	Type  uint16
	State uint8
	Inode uint64
	Path  string // "" for an unnamed socket; "@..." for an abstract one
}

// Listening reports whether the socket listens for connections.
func (u UnixSocket) Listening() bool { return u.Flags&unixAcceptCon != 0 }

// ParseUnix parses the contents of /proc/net/unix. Lines that do not parse
// are an error naming the line.
func ParseUnix(b []byte) ([]UnixSocket, error) {
	var out []UnixSocket
	for i, line := range bytes.Split(b, []byte("\n")) {
		if i == 0 || len(bytes.TrimSpace(line)) == 0 {
			continue // header
		}
		// Num RefCount Protocol Flags Type St Inode [Path]
		rest := string(line)
		var f [7]string
		for k := range f {
			rest = strings.TrimLeft(rest, " ")
			j := strings.IndexByte(rest, ' ')
			if j < 0 {
				j = len(rest)
			}
			f[k], rest = rest[:j], rest[j:]
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		typ, err2 := strconv.ParseUint(f[4], 16, 16)
		st, err3 := strconv.ParseUint(f[5], 16, 8)
		ino, err4 := strconv.ParseUint(f[6], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, err)
		}
		out = append(out, UnixSocket{Flags: uint32(flags), Type: uint16(typ), State: uint8(st), Inode: ino, Path: strings.TrimPrefix(rest, " ")})
	}
	return out, nil
}

// UnixListeners returns the inodes of the listening UNIX sockets bound to
// path, read from the caller's network namespace. path is compared as
// given and, when relative, also in its absolute form.
func UnixListeners(path string) ([]uint64, error) {
	return UnixListenersIn(filepath.Join(Root, "net"), path)
}

// UnixListenersIn is UnixListeners in the network namespace whose /proc
// net directory is netDir (/proc/PID/net: that of process PID, which may
// be another namespace than the caller's).
func UnixListenersIn(netDir, path string) ([]uint64, error) {
	file := filepath.Join(netDir, "unix")
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	socks, err := ParseUnix(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	abs, _ := filepath.Abs(path)
	var out []uint64
	for _, s := range socks {
		if s.Listening() && (s.Path == path || s.Path == abs) {
			out = append(out, s.Inode)
		}
	}
	return out, nil
}

// InetSocket is one line of /proc/net/{tcp,tcp6,udp,udp6}.
type InetSocket struct {
	UDP   bool           // from udp or udp6, else tcp or tcp6
	Local netip.AddrPort // IPv4 for tcp/udp, IPv6 (possibly v4-mapped) for tcp6/udp6
	State uint8
	UID   uint32
	Inode uint64
}

// Listening reports whether the socket is a TCP listener or a bound,
// unconnected UDP socket.
func (s InetSocket) Listening() bool {
	if s.UDP {
		return s.State == StateUDPBound
	}
	return s.State == StateTCPListen
}

// ParseInet parses the contents of one of /proc/net/{tcp,tcp6,udp,udp6};
// udp says which protocol the file is for. Addresses are in the kernel's
// byte order, 32-bit words in host order.
func ParseInet(b []byte, udp bool) ([]InetSocket, error) {
	var out []InetSocket
	for i, line := range bytes.Split(b, []byte("\n")) {
		if i == 0 || len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := strings.Fields(string(line))
		// sl local rem st queues timer retrnsmt uid timeout inode ...
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d %q: %d fields, want at least 10", i+1, line, len(f))
		}
		local, err := parseAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d local address %q: %w", i+1, f[1], err)
		}
		st, err1 := strconv.ParseUint(f[3], 16, 8)
		uid, err2 := strconv.ParseUint(f[7], 10, 32)
		ino, err3 := strconv.ParseUint(f[9], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("line %d %q: %w", i+1, line, err)
		}
		out = append(out, InetSocket{UDP: udp, Local: local, State: uint8(st), UID: uint32(uid), Inode: ino})
	}
	return out, nil
}

// parseAddrPort decodes "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6): each 32-bit word as the kernel holds it, printed in host order.
func parseAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("no ':'")
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(raw) != 4 && len(raw) != 16 {
		return netip.AddrPort{}, fmt.Errorf("%d address bytes, want 4 or 16", len(raw))
	}
	for w := 0; w < len(raw); w += 4 {
		binary.BigEndian.PutUint32(raw[w:], binary.NativeEndian.Uint32(raw[w:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// Listeners returns the listening sockets (see InetSocket.Listening) of
// the network namespace whose /proc net directory is netDir, for example
// /proc/1234/net or /proc/self/net. A missing tcp6 or udp6 (IPv6 off) is
// not an error.
func Listeners(netDir string) ([]InetSocket, error) {
	var out []InetSocket
	for _, f := range []struct {
		name string
		udp  bool
	}{{"tcp", false}, {"tcp6", false}, {"udp", true}, {"udp6", true}} {
		file := filepath.Join(netDir, f.name)
		b, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(f.name, "6") {
			continue
		}
		if err != nil {
			return nil, err
		}
		socks, err := ParseInet(b, f.udp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for _, s := range socks {
			if s.Listening() {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// ParseSocketLink returns the inode of a /proc/PID/fd link text such as
// "socket:[12345]", and false for anything else.
func ParseSocketLink(link string) (uint64, bool) { return parseSocketLink([]byte(link)) }

// SocketInodes returns the inodes of the sockets that process pid holds
// (ReadFDs(pid).Sockets).
func SocketInodes(pid int) (map[uint64]bool, error) {
	t, err := ReadFDs(pid)
	if err != nil {
		return nil, err
	}
	return t.Sockets, nil
}

// FindHolder returns the process holding a socket with one of the inodes,
// scanning /proc/*/fd (only processes whose fd directory the caller may
// read). It returns fs.ErrNotExist when none is found.
func FindHolder(inodes []uint64) (int, error) {
	want := make(map[uint64]bool, len(inodes))
	for _, ino := range inodes {
		want[ino] = true
	}
	holder := 0
	err := EachHolder(func(ino uint64) bool { return want[ino] }, func(pid int, _ []uint64) bool {
		holder = pid
		return false
	})
	if err != nil {
		return 0, err
	}
	if holder != 0 {
		return holder, nil
	}
	return 0, fmt.Errorf("no process holding socket inode %v: %w", inodes, fs.ErrNotExist)
}

// Holds reports whether process pid holds a socket with one of the inodes.
// It fails where /proc/PID/fd is not readable.
func Holds(pid int, inodes []uint64) (bool, error) {
	s, err := ScanFDs(pid)
	if err != nil {
		return false, err
	}
	return s.HoldsAny(inodes), nil
}

// HoldsListener reports whether process pid holds the listening UNIX
// socket bound at path, looked up in the process's own network namespace
// (/proc/PID/net/unix: the caller's may not show it) and fd table, and
// returns the fd table as far as the question read it. It fails
// (fs.ErrPermission) where /proc/PID/fd is not readable.
func HoldsListener(pid int, path string) (*FDScan, bool, error) {
	s, err := ScanFDs(pid)
	if err != nil {
		return nil, false, err
	}
	inodes, _ := UnixListenersIn(filepath.Join(Root, strconv.Itoa(pid), "net"), path)
	if len(inodes) == 0 {
		return s, false, nil // nothing to look for: read no link
	}
	return s, s.HoldsAny(inodes), nil
}
