package procnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sizes of the sock_diag messages (linux/netlink.h, linux/inet_diag.h).
const (
	nlmsgHdrLen    = 16
	diagReqLen     = 56 // struct inet_diag_req_v2
	diagMsgLen     = 72 // struct inet_diag_msg
	tcpStateListen = 10
	tcpStateClose  = 7 // unconnected UDP
)

// DiagListeners returns the listening TCP sockets and bound, unconnected
// UDP sockets of the caller's network namespace, IPv4 and IPv6, through
// NETLINK_SOCK_DIAG (as ss does). The kernel filters by state, which makes
// it much cheaper than reading /proc/net/{tcp,udp}[6] on hosts with large
// socket hash tables. It needs no privilege.
func DiagListeners() ([]InetSocket, error) {
	var out []InetSocket
	err := DiagEach(func(s InetSocket) { out = append(out, s) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DiagSel selects the families and protocols of a sock_diag dump.
type DiagSel uint8

// The dumps, one per family and protocol.
const (
	DiagTCP4 DiagSel = 1 << iota
	DiagTCP6
	DiagUDP4
	DiagUDP6
	DiagAll = DiagTCP4 | DiagTCP6 | DiagUDP4 | DiagUDP6
)

// DiagSelOf is the dump that has sockets of protocol udp (else TCP) and
// of addr's family.
func DiagSelOf(udp bool, addr netip.Addr) DiagSel {
	sel := DiagTCP4
	if udp {
		sel = DiagUDP4
	}
	if addr.Is6() && !addr.Is4In6() {
		sel <<= 1
	}
	return sel
}

// DiagEach is DiagListeners calling fn for each socket as it is parsed,
// without collecting them.
func DiagEach(fn func(InetSocket)) error { return DiagSelect(DiagAll, fn) }

// DiagSelect is DiagEach for the dumps sel selects only: a caller that
// looks for TCP listeners on IPv4 addresses asks for one dump of four.
func DiagSelect(sel DiagSel, fn func(InetSocket)) error {
	c, err := dialDiag(64 << 10)
	if err != nil {
		return err
	}
	defer c.close()
	seq := uint32(0)
	for _, q := range []struct {
		sel    DiagSel
		family uint8
		proto  uint8
		state  uint32
	}{
		{DiagTCP4, unix.AF_INET, unix.IPPROTO_TCP, tcpStateListen},
		{DiagTCP6, unix.AF_INET6, unix.IPPROTO_TCP, tcpStateListen},
		{DiagUDP4, unix.AF_INET, unix.IPPROTO_UDP, tcpStateClose},
		{DiagUDP6, unix.AF_INET6, unix.IPPROTO_UDP, tcpStateClose},
	} {
		if sel&q.sel == 0 {
			continue
		}
		seq++
		err := c.ask(diagRequest(seq, q.family, q.proto, 1<<q.state), func(b []byte) (bool, error) {
			done, err := parseDiag(b, seq, q.proto == unix.IPPROTO_UDP, fn)
			if err != nil {
				return false, fmt.Errorf("sock_diag family %d protocol %d: %w", q.family, q.proto, err)
			}
			return done, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// diagConn is a NETLINK_SOCK_DIAG socket, with a buffer for its answers.
type diagConn struct {
	fd  int
	buf []byte
}

func dialDiag(bufSize int) (*diagConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, os.NewSyscallError("socket NETLINK_SOCK_DIAG", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind netlink", err)
	}
	return &diagConn{fd: fd, buf: make([]byte, bufSize)}, nil
}

func (c *diagConn) close() { unix.Close(c.fd) }

// ask sends request req to the kernel and passes each datagram of the
// answer to parse, until parse reports the answer complete or fails.
func (c *diagConn) ask(req []byte, parse func(b []byte) (done bool, err error)) error {
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto netlink", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return os.NewSyscallError("recvfrom netlink", err)
		}
		if done, err := parse(c.buf[:n]); err != nil || done {
			return err
		}
	}
}

// diagRequest builds a dump request for sockets of one family and protocol
// in the given states.
func diagRequest(seq uint32, family, proto uint8, states uint32) []byte {
	b := make([]byte, nlmsgHdrLen+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0], r[1] = family, proto
	ne.PutUint32(r[4:], states)
	return b
}

// ParseDiag parses one datagram of a sock_diag dump answering request seq
// (messages of other sequence numbers are skipped). done reports the end
// of the dump. Addresses of AF_INET sockets are IPv4.
func ParseDiag(b []byte, seq uint32, udp bool) (socks []InetSocket, done bool, err error) {
	done, err = parseDiag(b, seq, udp, func(s InetSocket) { socks = append(socks, s) })
	if err != nil {
		return nil, false, err
	}
	return socks, done, nil
}

// parseDiag is ParseDiag calling fn for each socket (also for those
// before an error).
func parseDiag(b []byte, seq uint32, udp bool, fn func(InetSocket)) (done bool, err error) {
	return walkDiag(b, seq, func(body []byte) (bool, error) {
		if len(body) < diagMsgLen {
			return false, fmt.Errorf("inet_diag_msg of %d bytes, want %d", len(body), diagMsgLen)
		}
		var addr netip.Addr
		switch body[0] {
		case unix.AF_INET:
			addr = netip.AddrFrom4([4]byte(body[8:12]))
		case unix.AF_INET6:
			addr = netip.AddrFrom16([16]byte(body[8:24]))
		default:
			return false, nil
		}
		fn(InetSocket{
			UDP:   udp,
			Local: netip.AddrPortFrom(addr, binary.BigEndian.Uint16(body[4:])),
			State: body[1],
			UID:   binary.NativeEndian.Uint32(body[64:]),
			Inode: uint64(binary.NativeEndian.Uint32(body[68:])),
		})
		return false, nil
	})
}

// walkDiag calls fn with the body of each SOCK_DIAG_BY_FAMILY message of
// datagram b that answers request seq (messages of other requests and
// types are skipped). It reports the answer complete (done) at
// NLMSG_DONE, at an NLMSG_ERROR (its errno as the error, when not 0),
// or when fn says so, and stops at fn's error.
func walkDiag(b []byte, seq uint32, fn func(body []byte) (done bool, err error)) (bool, error) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		mseq := ne.Uint32(b[8:])
		if l < nlmsgHdrLen || l > len(b) {
			return false, fmt.Errorf("netlink message length %d with %d bytes left", l, len(b))
		}
		body := b[nlmsgHdrLen:l]
		if a := (l + 3) &^ 3; a <= len(b) {
			b = b[a:]
		} else {
			b = b[len(b):]
		}
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return false, errors.New("short netlink error message")
			}
			if errno := int32(ne.Uint32(body)); errno != 0 {
				return false, syscall.Errno(-errno)
			}
			return true, nil
		case unix.SOCK_DIAG_BY_FAMILY:
			if done, err := fn(body); err != nil || done {
				return done, err
			}
		}
	}
	return false, nil
}
