package procnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Constants of <linux/unix_diag.h>.
const (
	unixDiagReqLen  = 24 // struct unix_diag_req
	unixDiagMsgLen  = 16 // struct unix_diag_msg
	udiagShowPeer   = 0x04
	unixDiagAttrPer = 2 // UNIX_DIAG_PEER
)

// UnixPeer returns the inode of the socket at the other end of the
// connected UNIX socket fd, through NETLINK_SOCK_DIAG (as ss does). For a
// connection to a server, that is the socket the server accepted, which
// the server's process holds while it serves the connection: a way to find
// that process (see FindHolder) when the server's listening socket is in
// another network namespace, where the caller's /proc/net/unix does not
// show it.
func UnixPeer(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, os.NewSyscallError("socket NETLINK_SOCK_DIAG", err)
	}
	defer unix.Close(nl)
	if err := unix.Bind(nl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, os.NewSyscallError("bind netlink", err)
	}
	const seq = 1
	if err := unix.Sendto(nl, unixDiagRequest(seq, uint32(st.Ino)), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, os.NewSyscallError("sendto netlink", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(nl, buf, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("recvfrom netlink", err)
		}
		peer, done, err := ParseUnixPeer(buf[:n], seq)
		if err != nil || done {
			return peer, err
		}
	}
}

// unixDiagRequest asks for the one UNIX socket with inode ino, with its
// peer.
func unixDiagRequest(seq, ino uint32) []byte {
	b := make([]byte, nlmsgHdrLen+unixDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], 0xffffffff) // every state
	ne.PutUint32(r[8:], ino)
	ne.PutUint32(r[12:], udiagShowPeer)
	ne.PutUint32(r[16:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(r[20:], 0xffffffff)
	return b
}

// ParseUnixPeer parses one datagram answering unixDiagRequest seq: the
// peer's inode (0 when the socket has none) and whether the answer is
// complete.
func ParseUnixPeer(b []byte, seq uint32) (peer uint64, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		mseq := ne.Uint32(b[8:])
		if l < nlmsgHdrLen || l > len(b) {
			return 0, false, fmt.Errorf("netlink message length %d with %d bytes left", l, len(b))
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
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return 0, false, errors.New("short netlink error message")
			}
			if errno := int32(ne.Uint32(body)); errno != 0 {
				return 0, false, syscall.Errno(-errno)
			}
			return 0, true, nil
		case unix.NLMSG_DONE:
			return 0, true, nil
		case unix.SOCK_DIAG_BY_FAMILY:
		default:
			continue
		}
		if len(body) < unixDiagMsgLen {
			return 0, false, fmt.Errorf("unix_diag_msg of %d bytes, want %d", len(body), unixDiagMsgLen)
		}
		attrs := body[unixDiagMsgLen:]
		for len(attrs) >= 4 {
			al := int(ne.Uint16(attrs[0:]))
			at := ne.Uint16(attrs[2:])
			if al < 4 || al > len(attrs) {
				return 0, false, fmt.Errorf("netlink attribute length %d with %d bytes left", al, len(attrs))
			}
			if at == unixDiagAttrPer && al >= 8 {
				peer = uint64(ne.Uint32(attrs[4:]))
			}
			if a := (al + 3) &^ 3; a <= len(attrs) {
				attrs = attrs[a:]
			} else {
				attrs = attrs[len(attrs):]
			}
		}
		return peer, true, nil
	}
	return 0, false, nil
}
