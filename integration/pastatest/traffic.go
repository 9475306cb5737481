package pastatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DialTimeout bounds every client exchange of this package.
const DialTimeout = 3 * time.Second

// Server is a TCP or UDP server inside a test's namespace. It answers every
// connection (TCP: the reply, then it closes) or datagram (UDP: the reply,
// to the sender) with a fixed reply, and counts them.
type Server struct {
	Addr  net.Addr // the address bound inside the namespace
	Reply string
	hits  atomic.Int64
	close func() error
	wg    sync.WaitGroup
}

// Hits returns how many connections or datagrams the server answered.
func (s *Server) Hits() int { return int(s.hits.Load()) }

// Close stops the server and waits for its goroutine.
func (s *Server) Close() error {
	err := s.close()
	s.wg.Wait()
	return err
}

// Listen listens on network and addr (e.g. "tcp", ":80") inside the
// namespace; the listener closes when the test ends.
func Listen(t testing.TB, n *NetNS, network, addr string) net.Listener {
	t.Helper()
	return listenIn(t, n, network, addr, net.Listen)
}

// ListenPacket is Listen for a datagram socket (network "udp", "udp4"...).
func ListenPacket(t testing.TB, n *NetNS, network, addr string) net.PacketConn {
	t.Helper()
	return listenIn(t, n, network, addr, net.ListenPacket)
}

// listenIn runs listen inside n, fails the test if it fails, and closes
// what it made when the test ends.
func listenIn[C io.Closer](t testing.TB, n *NetNS, network, addr string, listen func(network, addr string) (C, error)) C {
	t.Helper()
	var c C
	if err := n.Do(func() (err error) { c, err = listen(network, addr); return err }); err != nil {
		t.Fatalf("pastatest: listen %s %s in netns %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ServeTCP starts a TCP server in the namespace, listening on addr (e.g.
// ":80", which is [::] dual-stack: the namespace's own loopback and
// interfaces, where pasta delivers forwarded connections). Each
// connection gets reply and is closed. The server stops when the test
// ends.
func ServeTCP(t testing.TB, n *NetNS, addr, reply string) *Server {
	t.Helper()
	s := ServeTCPFunc(t, n, "tcp", addr, func(net.Addr) string { return reply })
	s.Reply = reply
	return s
}

// ServeTCPFunc is ServeTCP on network ("tcp", "tcp4" or "tcp6") for a
// reply that depends on the client's address as the server sees it
// (its Reply is empty).
func ServeTCPFunc(t testing.TB, n *NetNS, network, addr string, reply func(peer net.Addr) string) *Server {
	t.Helper()
	l := Listen(t, n, network, addr)
	s := &Server{Addr: l.Addr(), close: l.Close}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			s.hits.Add(1)
			_ = c.SetDeadline(time.Now().Add(DialTimeout))
			_, _ = io.WriteString(c, reply(c.RemoteAddr()))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// ServeUDP starts a UDP server in the namespace on addr (e.g. ":80"); it
// answers every datagram with reply. It stops when the test ends.
func ServeUDP(t testing.TB, n *NetNS, addr, reply string) *Server {
	t.Helper()
	pc := ListenPacket(t, n, "udp", addr)
	s := &Server{Addr: pc.LocalAddr(), Reply: reply, close: pc.Close}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.hits.Add(1)
			_, _ = pc.WriteTo([]byte(reply), from)
		}
	}()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// HostPort joins a loopback address ("127.0.0.1", "::1", ...) and a port.
func HostPort(ip string, port uint16) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// checkLoopback refuses any destination that is not on the host's
// loopback: tests never send traffic anywhere else.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if !ip.Unmap().IsLoopback() {
		return fmt.Errorf("address %s is not loopback: tests only send traffic to loopback", addr)
	}
	return nil
}

// AskTCP connects to addr on the host's loopback and returns what the
// server sent before closing. A forwarded port whose target does not
// answer reads as an error or an empty reply.
func AskTCP(ctx context.Context, addr string) (string, error) {
	if err := checkLoopback(addr); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<16))
	if err != nil {
		return string(b), fmt.Errorf("read from %s: %w", addr, err)
	}
	return string(b), nil
}

// AskUDP sends a datagram to addr on the host's loopback and returns the
// first reply. It sends again every 200ms until the timeout, since UDP may
// lose the first datagram while a flow is set up.
func AskUDP(ctx context.Context, addr string) (string, error) {
	if err := checkLoopback(addr); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	var last error
	for ctx.Err() == nil {
		if _, err := c.Write([]byte("ping")); err != nil {
			last = err
		}
		next := time.Now().Add(200 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
			next = dl
		}
		_ = c.SetReadDeadline(next)
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		last = err
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			// e.g. connection refused (ICMP port unreachable): wait and
			// retry within the budget, the listener may come up.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return "", fmt.Errorf("no UDP reply from %s within %v: %w", addr, DialTimeout, last)
}

// Ask is AskTCP or AskUDP by proto ("tcp" or "udp").
func Ask(ctx context.Context, proto, addr string) (string, error) {
	switch proto {
	case "tcp":
		return AskTCP(ctx, addr)
	case "udp":
		return AskUDP(ctx, addr)
	}
	return "", fmt.Errorf("unknown protocol %q", proto)
}

// MustAnswer asks addr over proto and fails the test unless the answer is
// want. It asks again while the attempt fails (for example connection
// refused), for up to DialTimeout: pesto returns before pasta has bound
// the listeners of its new table, so a test that adds a rule with pesto
// must allow a moment. A wrong answer fails at once.
func MustAnswer(t testing.TB, proto, addr, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	defer cancel()
	for {
		got, err := Ask(ctx, proto, addr)
		if err == nil && got == "" {
			err = errors.New("empty reply: the target did not answer")
		}
		if err == nil {
			if got != want {
				t.Fatalf("%s %s: got %q, want %q", proto, addr, got, want)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s %s: %v; want %q", proto, addr, err, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// MustNotAnswer fails the test if addr answers over proto with reply
// (which would mean the port is still forwarded to the server).
func MustNotAnswer(t testing.TB, proto, addr, reply string) {
	t.Helper()
	ctx := context.Background()
	if proto == "udp" {
		// Do not wait the whole budget for a datagram that must not come.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	got, err := Ask(ctx, proto, addr)
	if err == nil && got == reply {
		t.Fatalf("%s %s answered %q, want no answer", proto, addr, got)
	}
}

// FreePort and FreePorts pick ports at random in the kernel's ephemeral
// range (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default),
// which pasta's own outbound (SPLICE) rules leave out, so a port from here
// can be used in either table. FreePortRange picks in [rangeMin, rangeMax).
const (
	rangeMin = 10000
	rangeMax = 30000
)

// ephemeralRange returns the kernel's ephemeral port range.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1024 || h > 65535 || h-l < 1000 {
		return lo, hi
	}
	return l, h
}

// FreePort returns a port that is free on every address of the host for
// proto ("tcp" or "udp") right now: a random port of the ephemeral range
// that the dual-stack wildcard can bind. Use FreePorts for several
// distinct ports.
func FreePort(t testing.TB, proto string) uint16 {
	t.Helper()
	return FreePorts(t, proto, 1)[0]
}

// FreePorts returns n distinct ports that are free for proto, holding each
// bound until all are found so that none is picked twice. (Binding port 0
// and closing does not do: the kernel may hand out the same port again
// at once.)
func FreePorts(t testing.TB, proto string, n int) []uint16 {
	t.Helper()
	if n < 1 || n > 1000 {
		t.Fatalf("pastatest: FreePorts: bad count %d", n)
	}
	var (
		ports   []uint16
		closers []io.Closer
	)
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	lo, hi := ephemeralRange()
	seen := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			t.Fatalf("pastatest: only %d of %d free %s ports found", len(ports), n, proto)
		}
		p := lo + rand.IntN(hi-lo+1)
		if seen[p] {
			continue
		}
		seen[p] = true
		c, err := bindWildcard(proto, p)
		if err != nil {
			continue
		}
		closers = append(closers, c)
		ports = append(ports, uint16(p))
	}
	return ports
}

// bindWildcard binds the dual-stack wildcard address to port for proto.
func bindWildcard(proto string, port int) (io.Closer, error) {
	a := ":" + strconv.Itoa(port)
	switch proto {
	case "tcp":
		return net.Listen("tcp", a)
	case "udp":
		return net.ListenPacket("udp", a)
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}

// FreePortRange returns the first of n consecutive ports that are all
// free for proto right now, picked at random between 10000 and 30000.
func FreePortRange(t testing.TB, proto string, n int) uint16 {
	t.Helper()
	if n < 1 || n > 10000 {
		t.Fatalf("pastatest: FreePortRange: bad count %d", n)
	}
	for try := 0; try < 50; try++ {
		first := rangeMin + rand.IntN(rangeMax-rangeMin-n)
		if rangeFree(proto, first, n) {
			return uint16(first)
		}
	}
	t.Fatalf("pastatest: no %d consecutive free %s ports found", n, proto)
	return 0
}

func rangeFree(proto string, first, n int) bool {
	for p := first; p < first+n; p++ {
		if CanBind(proto, p) != nil {
			return false
		}
	}
	return true
}

// CanBind reports whether the dual-stack wildcard address can bind port
// for proto ("tcp" or "udp") now, as a service on every address would,
// in the calling thread's network namespace (inside NetNS.Do: that
// namespace's): nil when it can. Nothing stays bound.
func CanBind(proto string, port int) error {
	c, err := bindWildcard(proto, port)
	if err != nil {
		return err
	}
	_ = c.Close()
	return nil
}
