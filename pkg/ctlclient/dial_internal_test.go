package ctlclient

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen0 listens on a new UNIX socket with a backlog of 0, as the
// forwarder does: one connection waits to be accepted, the next is
// refused with EAGAIN.
func listen0(t *testing.T) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	return path, fd
}

// A connect to a forwarder whose one waiting slot is taken sleeps in the
// kernel until the forwarder accepts, and then goes through; one it
// never accepts fails with EAGAIN once its wait is over.
func TestConnectWaitsForAccept(t *testing.T) {
	path, lfd := listen0(t)
	queued, err := connect(path, time.Millisecond)
	if err != nil {
		t.Fatalf("first connect: %v", err)
	}
	defer queued.Close()
	if c, err := connect(path, 20*time.Millisecond); !errors.Is(err, syscall.EAGAIN) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("connect with the slot taken: %v, want EAGAIN after its wait", err)
	}
	accepted := make(chan error, 1)
	time.AfterFunc(200*time.Millisecond, func() {
		nfd, _, err := unix.Accept(lfd)
		if err == nil {
			unix.Close(nfd)
		}
		accepted <- err
	})
	c, err := connect(path, 10*time.Second)
	if err != nil {
		t.Fatalf("connect while the forwarder accepts the one before: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}
