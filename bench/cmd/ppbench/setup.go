package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Env is the test bed: a pasta forwarder attached to a namespace of its
// own, and a veth pair into a "container" namespace for portmap, all made
// by this program (names start with Prefix) and removed by Close.
type Env struct {
	Prefix   string
	Dir      string // work directory: sockets, PID files, plugin data
	PastaBin string
	PestoBin string

	PastaNS  string // netns name pasta is attached to
	CtrNS    string // netns name of the portmap "container"
	Sock     string // pasta control socket
	PIDFile  string
	PastaPID int
	HostIP   string // host end of the veth (198.18.0.1)
	CtrIP    string // container end of the veth (198.18.0.2)

	netnsMade []string
	linkMade  string
}

func sh(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// namedNetns returns the name under /run/netns of the network namespace
// this process is in, or "" when it is in none of them (then it is most
// likely the machine's own).
func namedNetns() (string, error) {
	var self syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		return "", fmt.Errorf("stat own netns: %w", err)
	}
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return "", nil
	}
	for _, e := range ents {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil && st.Ino == self.Ino && st.Dev == self.Dev {
			return e.Name(), nil
		}
	}
	return "", nil
}

func (e *Env) addNetns(ctx context.Context, name string) error {
	if err := makeNetns(ctx, name); err != nil {
		return err
	}
	e.netnsMade = append(e.netnsMade, name)
	return nil
}

// makeNetns makes namespace name with its loopback up. A leftover of an
// earlier, interrupted run goes first; a namespace made but not set up
// is removed again.
func makeNetns(ctx context.Context, name string) error {
	if _, err := os.Stat("/run/netns/" + name); err == nil {
		if _, err := sh(ctx, "ip", "netns", "del", name); err != nil {
			return err
		}
	}
	if _, err := sh(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	if _, err := sh(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		_, _ = sh(ctx, "ip", "netns", "del", name)
		return err
	}
	return nil
}

// Start builds the namespaces and the veth, and starts pasta.
func (e *Env) Start(ctx context.Context) error {
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	e.PastaNS, e.CtrNS = e.Prefix+"pasta", e.Prefix+"ctr"
	e.Sock = filepath.Join(e.Dir, "pasta.sock")
	e.PIDFile = filepath.Join(e.Dir, "pasta.pid")
	e.HostIP, e.CtrIP = "198.18.0.1", "198.18.0.2"
	if err := e.addNetns(ctx, e.PastaNS); err != nil {
		return err
	}
	if err := e.addNetns(ctx, e.CtrNS); err != nil {
		return err
	}
	// veth: host end here (the bench's own namespace), peer in CtrNS.
	e.linkMade = e.Prefix + "v0"
	_, _ = sh(ctx, "ip", "link", "del", e.linkMade)
	steps := [][]string{
		{"ip", "link", "add", e.linkMade, "type", "veth", "peer", "name", "eth0", "netns", e.CtrNS},
		{"ip", "addr", "add", e.HostIP + "/24", "dev", e.linkMade},
		{"ip", "link", "set", e.linkMade, "up"},
		{"ip", "-n", e.CtrNS, "addr", "add", e.CtrIP + "/24", "dev", "eth0"},
		{"ip", "-n", e.CtrNS, "link", "set", "eth0", "up"},
		// A managed pasta copies the node's default route into the
		// pod: the veth stands for the node's uplink.
		{"ip", "route", "replace", "default", "via", e.CtrIP, "dev", e.linkMade},
	}
	for _, s := range steps {
		if _, err := sh(ctx, s...); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
	}
	_ = os.Remove(e.Sock)
	_ = os.Remove(e.PIDFile)
	logf, err := os.Create(filepath.Join(e.Dir, "pasta.log"))
	if err != nil {
		return fmt.Errorf("pasta log: %w", err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, e.PastaBin, "--runas", "0", "--config-net", "-c", e.Sock,
		"-t", "none", "-u", "none", "-P", e.PIDFile, "--netns", "/run/netns/"+e.PastaNS)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start pasta (log %s): %w", logf.Name(), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(e.PIDFile)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				e.PastaPID = pid
				if _, err := readTables(ctx, e.Sock); err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pasta did not come up within 5s (PID file %s, socket %s)", e.PIDFile, e.Sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops pasta and removes what Start made.
func (e *Env) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e.PastaPID > 0 {
		_ = syscall.Kill(e.PastaPID, syscall.SIGTERM)
	}
	if e.linkMade != "" {
		_, _ = sh(ctx, "ip", "link", "del", e.linkMade)
	}
	for _, n := range e.netnsMade {
		_, _ = sh(ctx, "ip", "netns", "del", n)
	}
	_ = os.Remove(e.Sock)
}

// readTables reads the forwarder's tables in a read-only transaction.
func readTables(ctx context.Context, sock string) (wire.Tables, error) {
	conn, err := dialRetry(ctx, sock)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	h, err := wire.ReadHello(r)
	if err != nil {
		return nil, fmt.Errorf("read hello from %s: %w", sock, err)
	}
	if err := h.Check(); err != nil {
		return nil, fmt.Errorf("hello from %s: %w", sock, err)
	}
	ts, err := wire.ReadServerTables(r, wire.HelloSize)
	if err != nil {
		return nil, fmt.Errorf("read tables from %s: %w", sock, err)
	}
	return ts, nil
}

func dialRetry(ctx context.Context, sock string) (*net.UnixConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			uc := c.(*net.UnixConn)
			if dl, ok := ctx.Deadline(); ok {
				_ = uc.SetDeadline(dl.Add(5 * time.Second))
			}
			return uc, nil
		}
		if ctx.Err() != nil || !errors.Is(err, syscall.EAGAIN) {
			return nil, fmt.Errorf("connect %s: %w", sock, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// setHost replaces the HOST table's rules with rules (keeping every other
// table as read) in one transaction, and waits until a read-back shows it.
func setHost(ctx context.Context, sock string, rules []wire.Rule) error {
	conn, err := dialRetry(ctx, sock)
	if err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	h, err := wire.ReadHello(r)
	if err == nil {
		err = h.Check()
	}
	var ts wire.Tables
	if err == nil {
		ts, err = wire.ReadServerTables(r, wire.HelloSize)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("set HOST table of %s: %w", sock, err)
	}
	host := ts.Lookup("HOST")
	if host == nil {
		conn.Close()
		return fmt.Errorf("set HOST table of %s: forwarder has no HOST table", sock)
	}
	host.Rules = rules
	_, err = conn.Write(ts.AppendClient(nil))
	conn.Close()
	if err != nil {
		return fmt.Errorf("set HOST table of %s: write: %w", sock, err)
	}
	ts2, err := readTables(ctx, sock)
	if err != nil {
		return err
	}
	if got := ts2.Lookup("HOST"); got == nil || len(got.Rules) != len(rules) {
		n := -1
		if got != nil {
			n = len(got.Rules)
		}
		return fmt.Errorf("set HOST table of %s: forwarder holds %d rules, want %d (it refused the table)", sock, n, len(rules))
	}
	return nil
}

// hostRules is the number of rules in the HOST table.
func hostRules(ctx context.Context, sock string) (int, error) {
	ts, err := readTables(ctx, sock)
	if err != nil {
		return 0, err
	}
	t := ts.Lookup("HOST")
	if t == nil {
		return 0, fmt.Errorf("%s: no HOST table", sock)
	}
	return len(t.Rules), nil
}

// tcpRules builds the forwarder rules of mappings, one per mapping (the
// "rules of others" placed directly into the table).
func tcpRules(ms []portMapping) []wire.Rule {
	out := make([]wire.Rule, len(ms))
	for i, m := range ms {
		out[i] = wire.NewRule(wire.Proto(6), netip.MustParseAddr(m.HostIP), uint16(m.HostPort), uint16(m.HostPort), uint16(m.ContainerPort), 0)
	}
	return out
}

// flushNetfilter removes every nftables and iptables rule of the bench's
// own network namespace (never run in the initial one: see main).
func flushNetfilter(ctx context.Context) error {
	_, err := sh(ctx, "nft", "flush", "ruleset")
	return err
}
