package procnet

import (
	"encoding/binary"
	"fmt"
	"os"

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
	c, err := dialDiag(8192)
	if err != nil {
		return 0, err
	}
	defer c.close()
	const seq = 1
	var peer uint64
	err = c.ask(unixDiagRequest(seq, uint32(st.Ino)), func(b []byte) (done bool, err error) {
		peer, done, err = ParseUnixPeer(b, seq)
		return done, err
	})
	return peer, err
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
	done, err = walkDiag(b, seq, func(body []byte) (bool, error) {
		if len(body) < unixDiagMsgLen {
			return false, fmt.Errorf("unix_diag_msg of %d bytes, want %d", len(body), unixDiagMsgLen)
		}
		ne := binary.NativeEndian
		attrs := body[unixDiagMsgLen:]
		for len(attrs) >= 4 {
			al := int(ne.Uint16(attrs[0:]))
			at := ne.Uint16(attrs[2:])
			if al < 4 || al > len(attrs) {
				return false, fmt.Errorf("netlink attribute length %d with %d bytes left", al, len(attrs))
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
		return true, nil
	})
	if err != nil {
		return 0, false, err
	}
	return peer, done, nil
}
