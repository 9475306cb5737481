package ctlclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Defaults of the Client's tunables.
const (
	defaultRetryMin   = time.Millisecond
	defaultRetryMax   = 10 * time.Millisecond
	defaultTimeout    = 10 * time.Second
	defaultListenWait = 200 * time.Millisecond
	defaultStartWait  = 500 * time.Millisecond
)

// withTimeout bounds ctx by c.Timeout unless it has an earlier deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.Timeout
	if d <= 0 {
		d = defaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

// connectSlice bounds one blocking connect to a busy forwarder, so that
// a context cancelled without a deadline is seen within it.
const connectSlice = 100 * time.Millisecond

// dial connects to the control socket. While the forwarder is busy with
// another client (its backlog of 0 is full) the connect sleeps in the
// kernel, which wakes it when the forwarder accepts, until ctx ends: a
// burst of clients that polled instead (a connect every few
// milliseconds each) would keep the CPUs busy enough to starve the
// forwarder they wait for. A socket file that does not exist (ENOENT)
// or that nobody listens on (ECONNREFUSED) is retried with backoff for
// at most c.StartWait: a forwarder that is starting, or one that is dead.
func (c *Client) dial(ctx context.Context) (*net.UnixConn, error) {
	startWait := c.StartWait
	if startWait <= 0 {
		startWait = defaultStartWait
	}
	giveUp := time.Now().Add(startWait)
	lo, hi := c.RetryMin, c.RetryMax
	if lo <= 0 {
		lo = defaultRetryMin
	}
	if hi < lo {
		hi = max(defaultRetryMax, lo)
	}
	wait := lo
	var err error
	for {
		slice := connectSlice
		if d, ok := ctx.Deadline(); ok {
			slice = min(slice, time.Until(d))
		}
		if cerr := ctx.Err(); cerr != nil || slice <= 0 {
			if cerr == nil {
				cerr = context.DeadlineExceeded
			}
			if err == nil {
				return nil, &UnreachableError{Path: c.Path, Err: cerr}
			}
			return nil, &UnreachableError{Path: c.Path, Err: fmt.Errorf("%w; last attempt: %w", cerr, err)}
		}
		var conn *net.UnixConn
		conn, err = connect(c.Path, slice)
		if err == nil {
			return conn, nil
		}
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
			continue // waited in the kernel: still busy
		case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT):
			if time.Now().After(giveUp) {
				return nil, &UnreachableError{Path: c.Path, Err: fmt.Errorf("no forwarder answered for %v: %w", startWait, err)}
			}
		default:
			return nil, &UnreachableError{Path: c.Path, Err: err}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, hi)
	}
}

// connect makes one connect attempt, which waits up to wait in the
// kernel while the forwarder's backlog is full (SO_SNDTIMEO bounds a
// blocking connect of a UNIX socket), then fails with EAGAIN.
func connect(path string, wait time.Duration) (*net.UnixConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	tv := unix.NsecToTimeval(max(wait, time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return nil, os.NewSyscallError("setsockopt SO_SNDTIMEO", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, os.NewSyscallError("connect", err)
	}
	// FileConn makes its own descriptor non-blocking, for the poller.
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return nc.(*net.UnixConn), nil
}

// session is one open connection: one transaction.
type session struct {
	path string
	conn *net.UnixConn
	br   *bufio.Reader
	stop func() bool
	peer ucred
	id   Identity // of the forwarder reached
}

// closedTries is how many connections in a row a forwarder may close
// before its hello before it counts as unreachable.
const closedTries = 3

// closedBeforeHello is a connection the forwarder closed without a byte.
type closedBeforeHello struct{ err error }

func (e *closedBeforeHello) Error() string {
	return fmt.Sprintf("the forwarder closed the connection before its hello: %v", e.err)
}
func (e *closedBeforeHello) Unwrap() error { return e.err }

// open connects, reads the hello and the tables, and returns the session
// with what it saw. On a protocol mismatch it sends nothing and closes.
// A forwarder that closes a connection before its hello is on its way
// out (pasta does so when the namespace it serves is gone): open then
// connects again, so that the caller sees it gone (its socket refused or
// removed), or its hello if it stays; after closedTries such closes it
// is unreachable. Nothing was sent on the closed connections.
func (c *Client) open(ctx context.Context) (*session, *Snapshot, error) {
	for try := 1; ; try++ {
		s, snap, err := c.openOnce(ctx)
		var cb *closedBeforeHello
		if !errors.As(err, &cb) {
			return s, snap, err
		}
		if try == closedTries || ctx.Err() != nil {
			return nil, nil, &UnreachableError{Path: c.Path, Err: fmt.Errorf("it closed %d connections in a row before its hello: %w", try, cb.err)}
		}
		t := time.NewTimer(time.Duration(try) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// openOnce is one connection of open.
func (c *Client) openOnce(ctx context.Context) (*session, *Snapshot, error) {
	file := socketFile(c.Path)
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	s := &session{path: c.Path, conn: conn, br: bufio.NewReaderSize(conn, 32<<10)}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	// A cancelled context interrupts any blocked read or write.
	s.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	snap := &Snapshot{}
	if s.peer, err = peerCred(conn); err != nil {
		s.close()
		return nil, nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	snap.PeerUID = s.peer.uid
	s.id = connIdentity(c.Path, file, s.peer)
	snap.Identity = s.id
	if err := c.reached(s.id); err != nil {
		s.close()
		return nil, nil, err
	}
	if _, err := s.br.Peek(1); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		s.close()
		return nil, nil, &closedBeforeHello{err: err}
	}
	if snap.Hello, err = wire.ReadHello(s.br); err != nil {
		s.close()
		return nil, nil, fmt.Errorf("control socket %s: %w", c.Path, s.ctxErr(ctx, err))
	}
	if err := snap.Hello.Check(); err != nil {
		s.close()
		return nil, nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	if snap.Tables, err = wire.ReadServerTables(s.br, wire.HelloSize); err != nil {
		s.close()
		return nil, nil, fmt.Errorf("control socket %s: %w", c.Path, s.ctxErr(ctx, err))
	}
	return s, snap, nil
}

// ctxErr adds the context's error to an I/O error it caused.
// The socket's deadline is the context's, and may fire just before the
// context's own timer.
func (s *session) ctxErr(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
	}
	return err
}

// send writes the tables in one write and waits for the forwarder to
// close the connection, which it does once it has switched to them (or
// refused them): a fresh connection then sees the outcome.
func (s *session) send(ts wire.Tables) error {
	if _, err := s.conn.Write(ts.AppendClient(nil)); err != nil {
		return fmt.Errorf("control socket %s: send tables: %w", s.path, err)
	}
	// Version 2 sends nothing back; anything that arrives is ignored.
	_, err := io.Copy(io.Discard, s.br)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("control socket %s: wait for the forwarder to close: %w", s.path, err)
	}
	return nil
}

func (s *session) close() {
	s.stop()
	s.conn.Close()
}

// ucred is the peer's credentials (SO_PEERCRED).
type ucred struct {
	pid int
	uid uint32
}

// peerCred returns the credentials of the process at the other end
// (SO_PEERCRED): those of the process that called listen(), which for a
// daemonized pasta has exited since.
func peerCred(conn *net.UnixConn) (ucred, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return ucred{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return ucred{}, err
	}
	if cerr != nil {
		return ucred{}, os.NewSyscallError("getsockopt SO_PEERCRED", cerr)
	}
	return ucred{pid: int(cred.Pid), uid: cred.Uid}, nil
}
