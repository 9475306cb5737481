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

// probeHello connects to the control socket and reads the server's hello,
// then closes without sending anything (which changes nothing). It checks
// only the magic: whether the version is one the client speaks is the
// client's verdict (the plugin reports that as a protocol mismatch), not a
// reason to start another forwarder.
func probeHello(ctx context.Context, socket string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("connect to control socket %s: %w", socket, err)
	}
	defer conn.Close()
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

// unreachable reports whether a probe error means nothing listens on the
// socket path (file missing, or no listener), as opposed to a server
// that is slow or busy.
func unreachable(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}
