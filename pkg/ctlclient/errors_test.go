package ctlclient_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// greeting builds a hello followed by raw table bytes.
func greeting(h wire.Hello, tables ...[]byte) []byte {
	return bytes.Join(append([][]byte{h.Append(nil)}, tables...), nil)
}

func pifHeader(id byte, name string, count uint32) []byte {
	b := []byte{id}
	var n [wire.PifNameSize]byte
	copy(n[:], name)
	b = append(b, n[:]...)
	b = binary.BigEndian.AppendUint32(b, 0x3f)
	return binary.BigEndian.AppendUint32(b, count)
}

// Every decoding error reaches the caller naming the socket, with nothing sent.
func TestDecodeErrorsThroughClient(t *testing.T) {
	ok := wire.DefaultHello()
	v3 := ok
	v3.Version = 3
	bad := ok
	bad.Magic[0] = 'B'
	small := ok
	small.PifNameSize = 64
	ifs := ok
	ifs.IfNameSize = 32
	rule := ctltest.DefaultTables()[1].Rules[0].Append(nil)
	for _, tc := range []struct {
		name     string
		fault    ctltest.Fault
		mismatch string // MismatchError.Field, or "" for a DecodeError
		msg      string
	}{
		{"wrong magic", ctltest.Fault{Hello: &bad}, "magic", `"Basil:s\x00"`},
		{"version 3", ctltest.Fault{Hello: &v3}, "version", "announced version 3, this client supports [2]"},
		{"pif name size", ctltest.Fault{Hello: &small}, "pif name size", "pif name size 64"},
		{"interface name size", ctltest.Fault{Hello: &ifs}, "interface name size", "interface name size 32"},
		{"garbage", ctltest.Fault{Greeting: []byte("HTTP/1.1 400 Bad Request\r\n\r\n")}, "magic", "HTTP/1."},
		{"duplicate pif id", ctltest.Fault{Greeting: greeting(ok, pifHeader(1, "HOST", 0), pifHeader(1, "X", 0), []byte{0})}, "", "duplicate pif id 1"},
		{"duplicate pif name", ctltest.Fault{Greeting: greeting(ok, pifHeader(1, "HOST", 0), pifHeader(2, "HOST", 0), []byte{0})}, "", `duplicate pif name "HOST"`},
		{"unterminated name", ctltest.Fault{Greeting: greeting(ok, pifHeader(1, strings.Repeat("x", 128), 0), []byte{0})}, "", "not NUL-terminated"},
		{"count over 255", ctltest.Fault{Greeting: greeting(ok, pifHeader(1, "HOST", 300), []byte{0})}, "", "rule count 300 is over the limit of 255"},
		{"truncated hello", ctltest.Fault{TruncateAt: 12}, "", "server hello at byte 0: stream ended early: got 12 of 20 bytes"},
		{"truncated rule", ctltest.Fault{Greeting: greeting(ok, pifHeader(3, "SPLICE", 1), rule), TruncateAt: 20 + 137 + 20}, "", "rule 1 of 1 of pif 3 (SPLICE) at byte 157"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ctltest.NewServer(t, ctltest.DefaultTables(), ctltest.WithDefaultFault(tc.fault))
			c := newClient(s)
			for _, call := range []func() error{
				func() error { _, err := c.Read(context.Background()); return err },
				func() error {
					_, err := c.Update(context.Background(), add(tcp(1000)), ctlclient.UpdateOptions{})
					return err
				},
			} {
				err := call()
				if err == nil || !strings.Contains(err.Error(), s.Path) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v; want the path and %q", err, tc.msg)
				}
				var me *wire.MismatchError
				var de *wire.DecodeError
				if tc.mismatch != "" && (!errors.As(err, &me) || me.Field != tc.mismatch) {
					t.Fatalf("error %v; want a mismatch of %s", err, tc.mismatch)
				}
				if tc.mismatch == "" && !errors.As(err, &de) {
					t.Fatalf("error %v; want a *wire.DecodeError", err)
				}
			}
			waitFor(t, func() bool { return s.Stats().Conns == 2 })
			if st := s.Stats(); st.Updates != 1 || st.Rejected != 0 {
				t.Fatalf("something was sent: %+v", st)
			}
		})
	}
}

// A forwarder that closes connections before its hello is on its way
// out: the client connects again, and reports it unreachable, or gone,
// or goes on when the forwarder stays and answers.
func TestClosedBeforeHello(t *testing.T) {
	closed := ctltest.Fault{CloseOnAccept: true}
	exit := closed // and removes its socket, as pasta does on its way out
	exit.Before = func(s *ctltest.Server) { os.Remove(s.Path) }
	for _, tc := range []struct {
		name  string
		opts  []ctltest.Option
		conns int    // connections the server accepted
		msg   string // "" for success
		gone  bool   // the error says the socket is gone
	}{
		{"every connection", []ctltest.Option{ctltest.WithDefaultFault(closed)}, 3, "closed 3 connections in a row before its hello", false},
		{"then exits", []ctltest.Option{ctltest.WithFaults(exit)}, 1, "no forwarder answered", true},
		{"then answers", []ctltest.Option{ctltest.WithFaults(closed, closed)}, 3, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ctltest.NewServer(t, ctltest.DefaultTables(), tc.opts...)
			_, err := newClient(s).Update(context.Background(), add(tcp(1000)), ctlclient.UpdateOptions{})
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("update: %v", err)
				}
				// The server's own initial tables count as its first update.
				if st := s.Stats(); st.Updates != 2 || st.Conns != tc.conns {
					t.Fatalf("stats %+v; want one update on connection %d", st, tc.conns)
				}
				return
			}
			var ue *ctlclient.UnreachableError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), s.Path) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v; want unreachable, the path and %q", err, tc.msg)
			}
			if g := errors.Is(err, syscall.ENOENT); g != tc.gone {
				t.Fatalf("error %v: gone %v, want %v", err, g, tc.gone)
			}
			if st := s.Stats(); st.Conns != tc.conns || st.Updates != 1 {
				t.Fatalf("stats %+v; want %d connections and nothing sent", st, tc.conns)
			}
		})
	}
}

func TestStallEndsAtDeadline(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables(), ctltest.WithDefaultFault(ctltest.Fault{StallAt: 100}))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := newClient(s).Read(ctx)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "header of pif 1") {
		t.Fatalf("stall: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	// Cancellation interrupts too.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := newClient(s).Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
}

// staleSocket makes a socket file in dir that nobody listens on, as a dead
// forwarder leaves behind.
func staleSocket(t *testing.T, dir string) string {
	t.Helper()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	return stale
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	stale := staleSocket(t, dir)
	notSock := filepath.Join(dir, "file")
	os.WriteFile(notSock, nil, 0o600)
	for _, tc := range []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(dir, "none.sock"), syscall.ENOENT},
		{"refused", stale, syscall.ECONNREFUSED},
		{"not a socket", notSock, syscall.ECONNREFUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &ctlclient.Client{Path: tc.path, Timeout: 100 * time.Millisecond}
			start := time.Now()
			_, err := c.Update(context.Background(), add(tcp(1000)), ctlclient.UpdateOptions{})
			var ue *ctlclient.UnreachableError
			if !errors.As(err, &ue) || ue.Path != tc.path || !errors.Is(err, tc.want) {
				t.Fatalf("error %v; want unreachable with %v", err, tc.want)
			}
			if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
				t.Fatalf("gave up after %v, want the 100ms deadline", d)
			}
		})
	}
}

// A dead forwarder (its socket file left behind, or gone) is reported after
// StartWait, not after the whole Timeout: a runtime learns it at once.
func TestDeadForwarderFailsFast(t *testing.T) {
	dir := t.TempDir()
	stale := staleSocket(t, dir)
	for _, path := range []string{stale, filepath.Join(dir, "none.sock")} {
		c := &ctlclient.Client{Path: path, Timeout: 30 * time.Second, StartWait: 50 * time.Millisecond}
		start := time.Now()
		_, err := c.Read(context.Background())
		var ue *ctlclient.UnreachableError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no forwarder answered for 50ms") {
			t.Fatalf("%s: error %v; want unreachable after StartWait", path, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: gave up after %v, want about StartWait (50ms), not Timeout (30s)", path, d)
		}
	}
}

// While another client holds the forwarder, connect waits with backoff
// (EAGAIN once the backlog is full) and goes through when it is free.
func TestBusyRetries(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables())
	// One client being served (it has its hello), one in the backlog of 0.
	var held []net.Conn
	for i := range 2 {
		c, err := net.Dial("unix", s.Path)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if i == 0 {
			if _, err := wire.ReadHello(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := net.Dial("unix", s.Path); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("third connect: %v, want EAGAIN", err)
	}
	release := func() {
		for _, c := range held {
			c.Close()
		}
	}
	// Busy past the deadline: unreachable, with EAGAIN named.
	c := newClient(s)
	c.Timeout = 100 * time.Millisecond
	_, err := c.Read(context.Background())
	var ue *ctlclient.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.EAGAIN) {
		release()
		t.Fatalf("busy: %v", err)
	}
	// Freed while retrying: goes through.
	time.AfterFunc(100*time.Millisecond, release)
	c.Timeout = 5 * time.Second
	p := freePort(t)
	res, err := c.Update(context.Background(), add(tcp(p)), ctlclient.UpdateOptions{})
	if err != nil || res.Status != ctlclient.StatusSuccess {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestStatusErrorMessages(t *testing.T) {
	r := tcp(8080)
	pr := ctlclient.PifRule{Pif: wire.PifHost, Rule: r}
	ts := ctltest.DefaultTables()
	ts[0].Rules = []wire.Rule{tcp(9000)}
	for _, tc := range []struct {
		res  ctlclient.Result
		want []string
	}{
		{ctlclient.Result{Status: ctlclient.StatusSafeFail, Added: []ctlclient.PifRule{pr}, Cause: errors.New("conflict")},
			[]string{"/s", "refused", "nothing changed", "conflict", "add HOST TCP [127.0.0.1]:8080  =>  80"}},
		{ctlclient.Result{Status: ctlclient.StatusSocketFail, Failed: []ctlclient.RuleFailure{{PifRule: pr, Ports: []uint16{8080, 8081, 8082, 9000}}}},
			[]string{"HOST TCP [127.0.0.1]:8080  =>  80: ports 8080-8082, 9000 not listening", "rolled back"}},
		{ctlclient.Result{Status: ctlclient.StatusRollbackFail, Failed: []ctlclient.RuleFailure{{PifRule: pr, Ports: []uint16{8080}}}, Cause: errors.New("rollback refused"), Tables: ts},
			[]string{"port 8080 not listening", "rollback did not restore", "rollback refused", "active now: HOST [TCP [127.0.0.1]:9000  =>  80]; SPLICE [TCP [*]%lo:1-32767"}},
	} {
		msg := (&ctlclient.StatusError{Path: "/s", Result: &tc.res}).Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: %q lacks %q", tc.res.Status, msg, w)
			}
		}
	}
}

// The forwarder dies right after switching: the update went out, its
// outcome cannot be established.
func TestCrashAfterSwitchIsUnverified(t *testing.T) {
	s := ctltest.NewServer(t, ctltest.DefaultTables(), ctltest.WithFaults(ctltest.Fault{CrashAfterSwitch: true}))
	c := newClient(s)
	c.Timeout = 200 * time.Millisecond
	res, err := c.Update(context.Background(), add(tcp(freePort(t))), ctlclient.UpdateOptions{})
	// The read-back's connect is refused, or, when it was queued before
	// the crash closed the listening socket, reset.
	var ue *ctlclient.UnreachableError
	gone := errors.As(err, &ue) && errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
	if !gone || res == nil || res.Status != ctlclient.StatusUnverified || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("%v %+v", err, res)
	}
}

// BenchmarkUpdate: one verified update (add or remove one rule) against
// the in-process server, and the same without verification.
func BenchmarkUpdate(b *testing.B) {
	for _, opts := range []ctlclient.UpdateOptions{{}, {NoVerify: true}} {
		name := "verified"
		if opts.NoVerify {
			name = "noverify"
		}
		b.Run(name, func(b *testing.B) {
			s := ctltest.NewServer(b, ctltest.DefaultTables())
			c := newClient(s)
			r := tcp(freePort(b))
			del := edit(wire.Edit{Pif: wire.PifHost, Remove: []wire.Rule{r}})
			i := 0
			for b.Loop() {
				plan := add(r)
				if i%2 == 1 {
					plan = del
				}
				i++
				if _, err := c.Update(context.Background(), plan, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
