package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Probe is the one probe of a forwarder: it connects to the control
// socket and, with hello, reads the server's hello; then it closes without
// sending anything (which changes nothing). It checks only the magic:
// whether the version is one the client speaks is the client's verdict
// (the plugin reports that as a protocol mismatch), not a reason to start
// another forwarder. Without hello it only connects, which a forwarder
// busy with another client still accepts.
func Probe(ctx context.Context, socket string, hello bool) error {
	_, err := probe(ctx, socket, hello)
	return err
}

// probe is Probe, returning the peer's pid (SO_PEERCRED) with hello.
func probe(ctx context.Context, socket string, hello bool) (int32, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("connect to control socket %s: %w", socket, err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	if !hello {
		return 0, nil
	}
	peer, err := peerPID(conn)
	if err != nil {
		return 0, fmt.Errorf("control socket %s: %w", socket, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(DefaultTimeout))
	}
	// Unblock the read if ctx is cancelled without a deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var b [wire.HelloSize]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return 0, fmt.Errorf("read hello from control socket %s: %w", socket, err)
	}
	if !bytes.Equal(b[:len(wire.Magic)], wire.Magic[:]) {
		return 0, fmt.Errorf("control socket %s: not a passt control socket (hello starts %q)", socket, b[:len(wire.Magic)])
	}
	return peer, nil
}

// peerPID returns the pid SO_PEERCRED gives for conn.
func peerPID(conn *net.UnixConn) (int32, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, os.NewSyscallError("getsockopt SO_PEERCRED", cerr)
	}
	return cred.Pid, nil
}

func probeHello(ctx context.Context, socket string) error {
	_, err := probe(ctx, socket, true)
	return err
}

// probePeer probes the control socket in d (checked to be a socket of
// ours first: connect would follow a link) for a hello and returns the
// pid SO_PEERCRED gives: the process that created the listening socket.
func probePeer(ctx context.Context, d *safefs.Dir, socket string) (int32, error) {
	if err := checkEntry(d, SocketName, unix.S_IFSOCK); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("connect to control socket %s: %w", socket, syscall.ENOENT)
		}
		return 0, err
	}
	return probe(ctx, socket, true)
}

// Gone reports whether a probe's (or a client's) error means that no
// forwarder is at the socket path: the file is missing, is not a socket,
// or nobody listens on it, as opposed to a server that is slow or busy.
func Gone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTSOCK)
}

func unreachable(err error) bool { return Gone(err) }
