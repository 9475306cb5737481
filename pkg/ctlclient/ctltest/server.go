// Package ctltest runs an in-process stand-in for the passt/pasta control
// socket (protocol version 2), in the spirit of net/http/httptest.
//
// A Server behaves like the real forwarder as docs/wire-protocol.md
// describes it, and as passt's conf.c and fwd_rule.c implement it:
//
//   - it serves one client at a time (the socket listens with backlog 0, so
//     a third concurrent connect fails with EAGAIN as on the real one);
//   - on accept it sends the hello and every table, then waits;
//   - a client that closes without sending changes nothing;
//   - otherwise it clears every pending table, reads the client's tables and
//     validates each rule as it arrives with the forwarder's checks
//     (port range, target port, flags, capabilities, protocol, target
//     address, conflicts, limits, unknown pif ids); the first bad rule
//     closes the connection and the old tables stay active;
//   - it sends no status; after a valid update it switches: closes every
//     listening socket of the old tables and binds those of the new ones,
//     in table order, stopping at the first rule that fails to bind (the
//     new tables stay in place, as on the real forwarder).
//
// Differences from the real forwarder, on purpose, so tests never listen
// beyond loopback and stay cheap:
//
//   - only HOST rules that are not scan rules get sockets; SPLICE rules
//     (bound inside the guest's namespace by the real one) and scan rules
//     are kept in the tables but not bound; a weak rule binds the ports it
//     can and fails only when none binds, as on the real one;
//   - addresses are mapped to loopback (see ListenAddrs): a dual-stack rule
//     binds both 127.0.0.1 and ::1 (the real one binds a single socket on
//     "::"), any other IPv4 address binds 127.0.0.1 unless it is already a
//     loopback address, any other IPv6 address binds ::1; interface names
//     are ignored;
//   - there is no once-a-second retry of failed binds;
//   - the listener set-up runs in the test process, so the "forwarder
//     process" that a client finds is the test binary itself. A port that
//     the test itself holds therefore looks like the server's own listener
//     to a client that attributes sockets by process: to make a bind fail,
//     use Server.FailBind rather than occupying the port from the test.
//
// Faults (Fault) make it do what the real forwarder cannot be made to do
// on demand: stall mid-stream, truncate, send garbage or another hello,
// refuse a valid update, crash after switching.
package ctltest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Fault changes how the server handles one connection. The zero value is
// the normal behaviour.
type Fault struct {
	// Before, when set, runs as the connection is accepted, before anything
	// is sent: a test can use it to change the tables as another client
	// would (Server.Update) between two transactions of the client under test.
	Before func(s *Server)
	// CloseOnAccept closes the connection at once, sending nothing.
	CloseOnAccept bool
	// Hello, when set, is announced instead of wire.DefaultHello().
	Hello *wire.Hello
	// Greeting, when non-nil, is sent instead of the hello and the tables
	// (garbage); the server then reads the client's tables as usual.
	Greeting []byte
	// TruncateAt > 0 sends only that many bytes of the greeting, then closes.
	TruncateAt int
	// StallAt > 0 sends only that many bytes of the greeting, then holds the
	// connection, sending nothing more, until the client closes it.
	StallAt int
	// RejectUpdate reads the client's tables and closes without switching,
	// as the forwarder does for an invalid rule.
	RejectUpdate bool
	// CrashAfterSwitch switches to the client's tables (and binds), then
	// dies like a killed forwarder: its listening sockets close and the
	// control socket file stays behind, so connects are refused.
	CrashAfterSwitch bool
	// After, when set, runs once the transaction is over, before the
	// connection closes: a test can use it to change the tables as
	// another client would right after the client's update.
	After func(s *Server)
}

// Option configures a Server.
type Option func(*Server)

// WithFaults queues faults for the first connections, one each in order;
// later connections are served normally (or with WithDefaultFault's).
func WithFaults(fs ...Fault) Option {
	return func(s *Server) { s.faults = append(s.faults, fs...) }
}

// WithDefaultFault applies f to every connection that has no queued fault.
func WithDefaultFault(f Fault) Option {
	return func(s *Server) { s.always = f }
}

// WithHello makes the server announce h on every connection (another
// version, magic or name sizes).
func WithHello(h wire.Hello) Option {
	return func(s *Server) { s.hello = h }
}

// Stats counts what the server saw.
type Stats struct {
	Conns    int   // connections accepted
	ReadOnly int   // connections closed by the client without sending
	Updates  int   // updates applied (tables switched)
	Rejected int   // updates refused; the old tables stayed
	LastErr  error // why the last update was refused, or the last bind failure
}

// Server is a control socket server. Create it with NewServer.
type Server struct {
	// Path is the control socket's path, in a temporary directory.
	Path string

	t  testing.TB
	ln *net.UnixListener
	wg sync.WaitGroup

	mu        sync.Mutex
	hello     wire.Hello
	tables    wire.Tables
	faults    []Fault
	always    Fault
	failPorts map[uint16]bool
	socks     []io.Closer // listening sockets of the active tables
	conn      net.Conn    // connection being served
	stats     Stats
	closed    bool
	crashed   bool
}

// DefaultTables returns tables shaped like a freshly started pasta
// (`pasta -t none -u none`): HOST (id 1) empty and SPLICE (id 3) holding
// pasta's own four rules on lo, TCP and UDP, ports 1-32767 and
// 61000-65535, flags dual-stack|weak|scan; both with capabilities 0x3f.
func DefaultTables() wire.Tables {
	var splice []wire.Rule
	for _, p := range []wire.Proto{wire.ProtoTCP, wire.ProtoUDP} {
		for _, rg := range [][2]uint16{{1, 32767}, {61000, 65535}} {
			r := wire.NewRule(p, netipAny, rg[0], rg[1], rg[0], wire.FlagDualStack|wire.FlagWeak|wire.FlagScan)
			_ = r.SetInterface("lo")
			splice = append(splice, r)
		}
	}
	all := wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP | wire.CapScan | wire.CapIfName
	return wire.Tables{
		wire.NewTable(1, wire.PifHost, all),
		wire.NewTable(3, wire.PifSplice, all, splice...),
	}
}

// NewServer starts a server with the given active tables (bound as after a
// switch) and closes it when the test ends. A rule of tables that the real
// forwarder would refuse fails the test.
func NewServer(t testing.TB, tables wire.Tables, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, hello: wire.DefaultHello(), failPorts: map[uint16]bool{}}
	for _, o := range opts {
		o(s)
	}
	dir := t.TempDir()
	if len(dir) > 90 { // sun_path holds 108 bytes
		d, err := os.MkdirTemp("", "ctltest")
		if err != nil {
			t.Fatalf("ctltest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	s.Path = filepath.Join(dir, "ctl.sock")
	ln, err := listenBacklog0(s.Path)
	if err != nil {
		t.Fatalf("ctltest: %v", err)
	}
	s.ln = ln
	if err := s.Update(tables); err != nil {
		ln.Close()
		t.Fatalf("ctltest: initial tables: %v", err)
	}
	t.Cleanup(s.Close)
	s.wg.Add(1)
	go s.serve()
	return s
}

// listenBacklog0 listens on a unix stream socket at path with backlog 0,
// as the forwarder does.
func listenBacklog0(path string) (*net.UnixListener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", path, err)
	}
	return l.(*net.UnixListener), nil
}

// Tables returns a copy of the active tables.
func (s *Server) Tables() wire.Tables {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tables.Clone()
}

// Stats returns what the server has counted so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// PID is the process that holds the control socket: this test binary.
func (s *Server) PID() int { return os.Getpid() }

// Inject queues faults for the next connections, one each in order.
func (s *Server) Inject(fs ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fs...)
}

// FailBind makes binds of these ports fail from the next switch on, as if
// another process held them (in addition to ports really taken).
func (s *Server) FailBind(ports ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ports {
		s.failPorts[p] = true
	}
}

// AllowBind undoes FailBind for these ports, from the next switch on.
func (s *Server) AllowBind(ports ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ports {
		delete(s.failPorts, p)
	}
}

// Update validates ts as if another client had sent it (every table of
// the server must be named by id; tables left out become empty) and, when
// valid, switches to it and binds. It returns the first invalid rule's
// error, leaving the active tables unchanged. Bind failures are not
// errors, as on the real forwarder: see Stats.LastErr.
func (s *Server) Update(ts wire.Tables) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tables == nil { // initial tables define the pifs
		s.tables = emptied(ts)
	}
	pending := emptied(s.tables)
	for _, t := range ts {
		p := lookupID(pending, t.ID)
		if p == nil {
			return fmt.Errorf("received rules for non-existent table %d", t.ID)
		}
		for i, r := range t.Rules {
			if err := addRule(p, r); err != nil {
				return fmt.Errorf("pif %s rule %d (%s): %w", p.Name(), i, r, err)
			}
		}
	}
	s.switchLocked(pending)
	return nil
}

// Restart ends the server as a forwarder that exits ends (its listening
// sockets closed, queued faults kept) and starts a new one at the same
// path with tables, as a restarted pasta: a new control socket, with
// another inode, and none of the rules of before.
func (s *Server) Restart(tables wire.Tables) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("ctltest: restart of a closed server")
	}
	s.mu.Unlock()
	s.ln.SetUnlinkOnClose(false)
	s.ln.Close()
	s.wg.Wait()
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ctltest: restart: %w", err)
	}
	ln, err := listenBacklog0(s.Path)
	if err != nil {
		return fmt.Errorf("ctltest: restart: %w", err)
	}
	s.mu.Lock()
	s.closeSocksLocked()
	s.ln, s.tables, s.crashed = ln, nil, false
	s.mu.Unlock()
	if err := s.Update(tables); err != nil {
		return fmt.Errorf("ctltest: restart: initial tables: %w", err)
	}
	s.wg.Add(1)
	go s.serve()
	return nil
}

// Close stops the server, closes its listening sockets and removes the
// socket file. It is called when the test ends.
func (s *Server) Close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
	if already {
		return
	}
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	s.closeSocksLocked()
	s.mu.Unlock()
	os.Remove(s.Path)
}

func (s *Server) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("ctltest %s: "+format, append([]any{s.Path}, args...)...)
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed or crashed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conn = conn
		s.stats.Conns++
		f := s.always
		if len(s.faults) > 0 {
			f = s.faults[0]
			s.faults = s.faults[1:]
		}
		s.mu.Unlock()

		crash := s.handle(conn, f)
		if f.After != nil {
			f.After(s)
		}
		if crash {
			// A killed forwarder's sockets close together: the client
			// sees its connection end no earlier than the listeners.
			s.crash()
		}
		conn.Close()
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		if crash {
			return
		}
	}
}

// handle serves one transaction; it reports whether the server must now crash.
func (s *Server) handle(conn net.Conn, f Fault) bool {
	if f.Before != nil {
		f.Before(s)
	}
	if f.CloseOnAccept {
		return false
	}
	greeting := f.Greeting
	if greeting == nil {
		s.mu.Lock()
		h := s.hello
		if f.Hello != nil {
			h = *f.Hello
		}
		greeting = s.tables.AppendServer(h.Append(nil))
		s.mu.Unlock()
	}
	switch {
	case f.TruncateAt > 0 && f.TruncateAt < len(greeting):
		conn.Write(greeting[:f.TruncateAt])
		return false
	case f.StallAt > 0 && f.StallAt < len(greeting):
		conn.Write(greeting[:f.StallAt])
		io.Copy(io.Discard, conn) // until the client closes
		return false
	}
	if _, err := conn.Write(greeting); err != nil {
		return false
	}

	// Read the client's tables into emptied pending tables.
	s.mu.Lock()
	pending := emptied(s.tables)
	s.mu.Unlock()
	cr := &countReader{r: conn}
	err := wire.ReadClientTables(cr, func(id wire.PifID, count uint32, r *wire.Rule) error {
		p := lookupID(pending, id)
		if p == nil {
			return fmt.Errorf("received rules for non-existent table %d", id)
		}
		if r == nil {
			return nil
		}
		if err := addRule(p, *r); err != nil {
			return fmt.Errorf("pif %s rule %d (%s): %w", p.Name(), len(p.Rules), r, err)
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && cr.n == 0:
		s.stats.ReadOnly++
		return false
	case err != nil:
		s.stats.Rejected++
		s.stats.LastErr = err
		s.logf("update refused, old tables stay: %v", err)
		return false
	case f.RejectUpdate:
		s.stats.Rejected++
		s.stats.LastErr = errors.New("update refused by fault injection")
		return false
	}
	s.switchLocked(pending)
	return f.CrashAfterSwitch
}

// crash ends the server as a killed forwarder ends: sockets closed, the
// control socket file left behind (connects are then refused).
func (s *Server) crash() {
	s.ln.SetUnlinkOnClose(false)
	s.ln.Close()
	s.mu.Lock()
	s.crashed = true
	s.closeSocksLocked()
	s.mu.Unlock()
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// emptied returns the tables' ids, names and capabilities with no rules.
func emptied(ts wire.Tables) wire.Tables {
	out := make(wire.Tables, len(ts))
	for i, t := range ts {
		out[i] = wire.Table{ID: t.ID, RawName: t.RawName, Caps: t.Caps}
	}
	return out
}

func lookupID(ts wire.Tables, id wire.PifID) *wire.Table {
	for i := range ts {
		if ts[i].ID == id {
			return &ts[i]
		}
	}
	return nil
}
