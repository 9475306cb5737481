package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

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
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("connect to control socket %s: %w", socket, err)
	}
	defer conn.Close()
	if !hello {
		return nil
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
		return fmt.Errorf("read hello from control socket %s: %w", socket, err)
	}
	if !bytes.Equal(b[:len(wire.Magic)], wire.Magic[:]) {
		return fmt.Errorf("control socket %s: not a passt control socket (hello starts %q)", socket, b[:len(wire.Magic)])
	}
	return nil
}

func probeHello(ctx context.Context, socket string) error { return Probe(ctx, socket, true) }

// Gone reports whether a probe's (or a client's) error means that no
// forwarder is at the socket path: the file is missing, is not a socket,
// or nobody listens on it, as opposed to a server that is slow or busy.
func Gone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTSOCK)
}

func unreachable(err error) bool { return Gone(err) }
