package pastatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// StartTimeout bounds the start of pasta and the wait for its control socket.
const StartTimeout = 15 * time.Second

// Forwarder is a real pasta attached to a test's network namespace, with a
// control socket and a PID file.
type Forwarder struct {
	NS      *NetNS
	Socket  string // control socket path (pasta -c)
	PIDFile string // pasta -P
	LogFile string // pasta's standard output and error (all runs, appended)

	pasta, pesto string
	args         []string
	in           *NetNS // where pasta itself runs; nil: the test's namespace
}

// Option changes how Start runs pasta.
type Option func(*config)

type config struct {
	ns     *NetNS
	in     *NetNS
	socket string
	args   []string
}

// WithNetNS attaches pasta to an existing namespace instead of a new one.
func WithNetNS(n *NetNS) Option { return func(c *config) { c.ns = n } }

// InNetNS runs pasta itself inside n (through ip netns exec), rather
// than in the test's namespace: its listeners are n's, and its control
// socket is in n's /proc/net/unix, not the test's.
func InNetNS(n *NetNS) Option { return func(c *config) { c.in = n } }

// WithSocket sets the control socket path (default: a short path in a
// directory of the test's own).
func WithSocket(path string) Option { return func(c *config) { c.socket = path } }

// WithArgs appends arguments to pasta's command line, e.g. "-t", "8080".
// They come before --netns.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Start makes a network namespace (unless WithNetNS) and starts pasta on it:
//
//	pasta --runas 0 --config-net -c SOCK -t none -u none -P PIDFILE [ARGS] --netns PATH
//
// It waits until the control socket answers with a hello. When the test
// ends, pasta is killed and the namespace deleted; if the test failed,
// pasta's log is written to the test log.
func Start(t testing.TB, opts ...Option) *Forwarder {
	t.Helper()
	pasta, pesto := Bins(t)
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.ns == nil {
		cfg.ns = NewNetNS(t)
	}
	dir := TempDir(t, "pt-")
	if cfg.socket == "" {
		cfg.socket = filepath.Join(dir, "ctl.sock")
	}
	f := &Forwarder{
		NS:      cfg.ns,
		Socket:  cfg.socket,
		PIDFile: filepath.Join(dir, "pasta.pid"),
		LogFile: filepath.Join(t.TempDir(), "pasta.log"),
		pasta:   pasta,
		pesto:   pesto,
		args:    cfg.args,
		in:      cfg.in,
	}
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			f.dumpLog(t)
		}
	})
	if err := f.start(); err != nil {
		t.Fatalf("pastatest: %v", err)
	}
	return f
}

func (f *Forwarder) start() error {
	logf, err := os.OpenFile(f.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open pasta log: %w", err)
	}
	defer logf.Close()
	args := []string{"--runas", "0", "--config-net", "-c", f.Socket,
		"-t", "none", "-u", "none", "-P", f.PIDFile}
	args = append(args, f.args...)
	args = append(args, "--netns", f.NS.Path)

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	_ = os.Remove(f.PIDFile)
	fmt.Fprintf(logf, "### %s %s\n", f.pasta, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, f.pasta, args...)
	if f.in != nil {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", f.in.Name, f.pasta}, args...)...)
	}
	// Files, not pipes: the daemon keeps them, and Wait must not wait for it.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start %s %s: %w (log: %s)", f.pasta, strings.Join(args, " "), err, f.tail())
	}
	for {
		if _, err := f.pid(); err == nil {
			if err = f.answers(ctx); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			_, perr := f.pid()
			return fmt.Errorf("pasta on %s did not answer within %v (pid file: %v; log: %s)",
				f.Socket, StartTimeout, perr, f.tail())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// answers connects to the control socket and reads the server's hello.
func (f *Forwarder) answers(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", f.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	_, err = wire.ReadHello(c)
	return err
}

func (f *Forwarder) pid() (int, error) {
	b, err := os.ReadFile(f.PIDFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("PID file %s holds %q", f.PIDFile, b)
	}
	return pid, nil
}

// PID returns the running pasta's process ID, from its PID file.
func (f *Forwarder) PID(t testing.TB) int {
	t.Helper()
	pid, err := f.pid()
	if err != nil {
		t.Fatalf("pastatest: %v", err)
	}
	return pid
}

// Kill sends SIGKILL to pasta and waits until the process is gone. The
// socket file stays behind, as after a crash: connecting to it is refused.
func (f *Forwarder) Kill(t testing.TB) {
	t.Helper()
	pid := f.PID(t)
	if err := killWait(pid, 5*time.Second); err != nil {
		t.Fatalf("pastatest: kill pasta %d: %v", pid, err)
	}
}

// Restart kills pasta if it still runs and starts a fresh one on the same
// namespace, socket path and PID file: a forwarder that lost its rules.
func (f *Forwarder) Restart(t testing.TB) {
	t.Helper()
	f.stop()
	if err := f.start(); err != nil {
		t.Fatalf("pastatest: restart: %v", err)
	}
}

// stop kills pasta if its PID file names a live process.
func (f *Forwarder) stop() {
	if pid, err := f.pid(); err == nil {
		_ = killWait(pid, 5*time.Second)
	}
}

// killWait kills pid and waits until it has exited: /proc/PID is gone, or
// it is a zombie (its files and sockets are closed; pasta is a daemon, not
// our child, and init reaps it when it gets to it).
func killWait(pid int, timeout time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if exited(pid) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("process %d still exists %v after SIGKILL", pid, timeout)
}

// Pesto runs `pesto ARGS... SOCKET` and returns its standard output; it
// fails the test when pesto fails.
func (f *Forwarder) Pesto(t testing.TB, args ...string) string {
	t.Helper()
	out, err := f.TryPesto(args...)
	if err != nil {
		t.Fatalf("pastatest: %v", err)
	}
	return out
}

// TryPesto is Pesto returning the error (with pesto's standard error)
// instead of failing the test.
func (f *Forwarder) TryPesto(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	full := append(append([]string{}, args...), f.Socket)
	cmd := exec.CommandContext(ctx, f.pesto, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("pesto %s: %w: %s", strings.Join(full, " "),
			err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Tables returns pesto's printout of all forwarding tables.
func (f *Forwarder) Tables(t testing.TB) string {
	t.Helper()
	return f.Pesto(t)
}

// ReadTables reads the hello and the tables from the control socket
// itself (read-only: it closes without sending), for comparisons rule by
// rule, byte for byte.
func (f *Forwarder) ReadTables(t testing.TB) wire.Tables {
	t.Helper()
	ts, err := f.readTables()
	if err != nil {
		t.Fatalf("pastatest: read tables of %s: %v", f.Socket, err)
	}
	return ts
}

func (f *Forwarder) readTables() (wire.Tables, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", f.Socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	h, err := wire.ReadHello(c)
	if err != nil {
		return nil, err
	}
	if err := h.Check(); err != nil {
		return nil, err
	}
	return wire.ReadServerTables(c, int64(wire.HelloSize))
}

// Log returns what pasta wrote to its log so far.
func (f *Forwarder) Log() string {
	b, err := os.ReadFile(f.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

func (f *Forwarder) tail() string {
	l := f.Log()
	if len(l) > 2000 {
		l = "..." + l[len(l)-2000:]
	}
	return strings.TrimSpace(l)
}

func (f *Forwarder) dumpLog(t testing.TB) {
	t.Logf("pastatest: pasta log %s:\n%s", f.LogFile, f.Log())
	if out, err := f.TryPesto(); err == nil {
		t.Logf("pastatest: tables at the end:\n%s", out)
	}
}

// exited reports whether pid is gone or a zombie.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH)
	}
	// "PID (comm) STATE ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}
