// Package forwarder manages a pasta process per CNI attachment ("managed
// forwarder"): it starts pasta attached to the container's network
// namespace with a control socket, a PID file and a log file in one
// directory per attachment, finds it again on a later call, stops it, and
// reads back what pasta configured in the namespace as a CNI result.
//
// A managed pasta is identified by its command line, never by
// /proc/PID/exe: pasta may run through a wrapper that executes the dynamic
// loader, and it makes itself non-dumpable after daemonizing. The process
// named by the PID file counts as ours only when its command line holds
// "-c" (or "--conf-path") followed by this attachment's socket path.
//
// A start leaves nothing behind: pasta (or a wrapper standing for it) runs
// in a new process group, and every process it starts inherits OwnerEnv,
// set to the attachment's socket path. A failed start kills the group;
// Stop also stops every process that names the socket or carries
// OwnerEnv (pasta's daemon leaves the group with setsid), and the group
// recorded in DIR/pasta.pgid when one of those is still in it.
//
// Calls for one attachment directory are serialized with a file lock
// (Dir/lock), so two plugin invocations for the same attachment never
// start two forwarders.
//
// The command line is
//
//	pasta --config-net -c DIR/pasta.sock -P DIR/pasta.pid -l DIR/pasta.log \
//	      [--runas 0] -t none -u none -T none -U none --no-map-gw \
//	      [--map-host-loopback ADDR]... --dns-forward 169.254.1.1 \
//	      [-I IFNAME] [ARGS...] --netns NETNS
//
// Addresses and routes are copied from the host's template interface as
// pasta does by default, but the host's loopback is closed: no address of
// the container is mapped to it (pasta would map the gateway address) and
// no port of the container's loopback is forwarded to it (pasta's -T/-U
// default is "auto"), as Podman runs pasta. Config.MapHostLoopback and
// Config.LoopbackToHost open them. DNS queries to 169.254.1.1 are
// forwarded to the host's resolver, which then may listen on the host's
// loopback. No inbound port is forwarded until the plugin writes the
// container's mappings to the control socket. As root, --runas 0 keeps
// pasta from dropping to "nobody", who could not join a namespace root
// made; rootless, pasta keeps the caller's uid.
package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// File names inside an attachment directory.
const (
	SocketName  = "pasta.sock"
	PIDFileName = "pasta.pid"
	LogFileName = "pasta.log"
	OutFileName = "pasta.out"
	// PGIDFileName holds the process group a start made (see Stop).
	PGIDFileName = "pasta.pgid"
	lockName     = "lock"
)

// DefaultPasta is the binary looked up in PATH when Config.Pasta is empty.
const DefaultPasta = "pasta"

// DefaultTimeout bounds Ensure and Stop when neither the context nor
// Config.Timeout does.
const DefaultTimeout = 5 * time.Second

// MaxSocketPath is the longest control socket path a UNIX socket address
// holds (sun_path is 108 bytes, NUL included). Ensure refuses a Dir whose
// socket path is longer: keep attachment directories short (e.g. a hash
// of the attachment, not the 64-character container ID plus the network
// name).
const MaxSocketPath = 107

// Config says how to run the forwarder of one attachment.
type Config struct {
	// Pasta is the pasta binary: a path, or a name looked up in PATH.
	// Empty means DefaultPasta.
	Pasta string
	// Args are extra arguments appended to pasta's command line (the
	// plugin's "pastaArgs"), e.g. "--map-guest-addr", "169.254.1.2".
	// Only options on the allowed list are accepted (see CheckArgs): those
	// that shape the container's network and pasta's logging. -I and
	// --dns-forward given here replace this package's defaults.
	Args []string
	// MapHostLoopback are addresses (at most one IPv4, one IPv6) that
	// reach the host's loopback from inside the container (pasta
	// --map-host-loopback), for "host.containers.internal"-style access.
	// Empty: no address of the container reaches the host's loopback.
	MapHostLoopback []netip.Addr
	// LoopbackToHost makes a connection to a port of the container's own
	// loopback reach the same port of the host's loopback, for ports bound
	// there (pasta -T auto -U auto). False: -T none -U none.
	LoopbackToHost bool
	// NetNS is the path of the network namespace to attach to (CNI_NETNS).
	NetNS string
	// IfName is the name of the interface pasta creates in the namespace
	// (CNI_IFNAME, passed as -I). Empty keeps pasta's default: the name of
	// the host's interface with the default route.
	IfName string
	// Dir is the per-attachment directory, created with mode 0700 when
	// missing; it holds the socket, the PID file and the logs.
	Dir string
	// Timeout bounds Ensure (start plus waiting for the socket); zero
	// means DefaultTimeout. A deadline of the context applies as well.
	Timeout time.Duration
	// Side, when set, makes a chained forwarder: one that joins a pod
	// whose network another plugin made, on a side interface, without
	// configuring the namespace (see Side). Args may then hold logging
	// options only; MapHostLoopback, LoopbackToHost and IfName do not
	// apply.
	Side *Side
}

// Instance is a forwarder found or started by Ensure.
type Instance struct {
	Socket  string // control socket path (pasta -c)
	PIDFile string // PID file (pasta -P)
	LogFile string // pasta's log (pasta -l); pasta truncates it at start
	// OutFile holds pasta's standard output and error until it
	// daemonized: its start-up summary (addresses, DNS, rules) and any
	// error that made it exit before its log was open.
	OutFile string
	// PGIDFile holds the id of the process group the last start made.
	PGIDFile string
	PID      int // process id of the running pasta
	// Started is true when Ensure started this pasta, false when it reused
	// a running one.
	Started bool
}

// Paths returns the socket, PID file and log paths inside dir. PID and
// Started are zero.
func Paths(dir string) Instance {
	return Instance{
		Socket:   filepath.Join(dir, SocketName),
		PIDFile:  filepath.Join(dir, PIDFileName),
		LogFile:  filepath.Join(dir, LogFileName),
		OutFile:  filepath.Join(dir, OutFileName),
		PGIDFile: filepath.Join(dir, PGIDFileName),
	}
}

// instanceFor returns Paths of the absolute form of dir: pasta changes
// its working directory, so every path it is given must be absolute.
func instanceFor(dir string) (Instance, error) {
	if dir == "" {
		return Instance{}, errors.New("forwarder: no attachment directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Instance{}, fmt.Errorf("forwarder: attachment directory %q: %w", dir, err)
	}
	return Paths(abs), nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = DefaultTimeout
	}
	return context.WithTimeout(ctx, d)
}

// Ensure returns the running forwarder of the attachment in cfg.Dir, or
// starts one. A running one is reused when its PID file names a live
// process whose command line holds this attachment's socket path and
// cfg.NetNS, and the socket answers with a hello; one attached to another
// namespace, or whose socket file is gone or refuses connections, is
// stopped and replaced (one that is only busy past the deadline is an
// error, not replaced). Otherwise any stale socket and PID
// file are removed and pasta is started; Ensure returns once the control
// socket sends its hello, within ctx and cfg.Timeout. pasta never inherits
// the caller's standard output or error (they go to OutFile), and its
// standard input is /dev/null. On failure the tail of pasta's output and
// log is part of the error and a half-started pasta is stopped.
func Ensure(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.NetNS == "" {
		return nil, errors.New("forwarder: no network namespace path")
	}
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	inst, err := instanceFor(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if len(inst.Socket) > MaxSocketPath {
		return nil, fmt.Errorf("forwarder: control socket path %s is %d bytes, a UNIX socket path holds at most %d: use a shorter attachment directory",
			inst.Socket, len(inst.Socket), MaxSocketPath)
	}
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()

	dir := filepath.Dir(inst.Socket)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("forwarder: create attachment directory: %w", err)
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	pid, ok, err := running(inst)
	if err != nil && !errors.Is(err, errMalformedPID) {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	if ok {
		ns, err := processNetNS(pid)
		if err != nil {
			return nil, fmt.Errorf("forwarder: %w", err)
		}
		why := fmt.Sprintf("attached to %s", ns)
		if sameFile(ns, cfg.NetNS) {
			err := probeHello(ctx, inst.Socket)
			if err == nil {
				inst.PID = pid
				return &inst, nil
			}
			if !unreachable(err) {
				// Busy with another client past the deadline, or
				// something else answered: not ours to replace.
				return nil, fmt.Errorf("forwarder: pasta (pid %d) runs but does not answer: %w", pid, err)
			}
			why = fmt.Sprintf("without a control socket (%v)", err)
		}
		// Same attachment, but of no use: other namespace, or its
		// socket file is gone. Replace it.
		if err := stopInstance(ctx, inst); err != nil {
			return nil, fmt.Errorf("forwarder: replace pasta (pid %d) %s: %w", pid, why, err)
		}
	}
	if err := start(ctx, cfg, &inst); err != nil {
		return nil, err
	}
	return &inst, nil
}

// start runs pasta and waits until its control socket answers.
func start(ctx context.Context, cfg Config, inst *Instance) error {
	// A forwarder of this attachment that lost its PID file, then the
	// stale socket and PID file.
	if err := stopInstance(ctx, *inst); err != nil {
		return fmt.Errorf("forwarder: clear the way: %w", err)
	}
	bin := cfg.Pasta
	if bin == "" {
		bin = DefaultPasta
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("forwarder: pasta binary: %w", err)
	}
	backoff := 5 * time.Millisecond
	for {
		err := startOnce(ctx, cfg, inst, path)
		if err == nil || !errors.Is(err, errTapBusy) {
			return err
		}
		// The tap device of a pasta that just died is still being torn
		// down: try again while the deadline allows.
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// errTapBusy marks a start that failed because the namespace's tap
// device was still busy (pasta: "TUNSETIFF ioctl ... Device or resource
// busy"), as it is for a moment after the previous forwarder was killed.
var errTapBusy = errors.New("tap device busy")

// tapBusy reports whether pasta's start-up output says its tap device was
// busy.
func tapBusy(inst Instance) bool {
	b, err := os.ReadFile(inst.OutFile)
	return err == nil && bytes.Contains(b, []byte("TUNSETIFF")) && bytes.Contains(b, []byte("Device or resource busy"))
}

// startOnce runs pasta once and waits until its control socket answers.
func startOnce(ctx context.Context, cfg Config, inst *Instance, path string) error {
	out, err := os.OpenFile(inst.OutFile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("forwarder: open pasta output file: %w", err)
	}
	defer out.Close()

	args := buildArgs(cfg, *inst, os.Geteuid())
	cmd := exec.Command(path, args...)
	// An *os.File is handed to the child as is: no pipe back to the
	// caller, so nothing pasta keeps open can hold the plugin's output.
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = "/"
	// Everything this start leaves can be found and stopped: the process
	// and what it forks share a new process group (pasta's daemon leaves
	// it with setsid), and all of them inherit OwnerEnv, which names this
	// attachment's socket.
	cmd.Env = append(os.Environ(), OwnerEnv+"="+inst.Socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("forwarder: start %s for %s: %w", path, cfg.NetNS, err)
	}
	pgid := cmd.Process.Pid
	if err := os.WriteFile(inst.PGIDFile, []byte(fmt.Sprintf("%d\n", pgid)), 0o600); err != nil {
		killGroup(pgid)
		_ = cmd.Wait()
		return fmt.Errorf("forwarder: record the process group of pasta: %w", err)
	}
	// Reaped only when start returns: until then the exited process keeps
	// its PID, so the group id cannot name another group.
	defer func() { _ = cmd.Wait() }()
	fail := func(format string, a ...any) error {
		killGroup(pgid)
		stopQuietly(inst)
		return fmt.Errorf(format, a...)
	}

	// The foreground pasta exits once it has daemonized; its exit status
	// says whether set-up worked. The PID file is written before it exits.
	exit, err := waitExited(ctx, pgid)
	if err != nil {
		return fail("forwarder: start %s for %s: %w%s", path, cfg.NetNS, err, logTail(*inst))
	}
	if exit != "" {
		if tapBusy(*inst) {
			return fail("forwarder: start %s for %s: %s: %w%s", path, cfg.NetNS, exit, errTapBusy, logTail(*inst))
		}
		return fail("forwarder: start %s for %s: %s%s", path, cfg.NetNS, exit, logTail(*inst))
	}
	inst.Started = true

	backoff := time.Millisecond
	for {
		pid, ok, err := running(*inst)
		if err != nil {
			return fail("forwarder: %w", err)
		}
		if !ok {
			what := "exited after starting"
			if p, _ := readPIDFile(inst.PIDFile); p == 0 {
				what = "wrote no PID to " + inst.PIDFile
			}
			return fail("forwarder: pasta for %s %s%s", cfg.NetNS, what, logTail(*inst))
		}
		inst.PID = pid
		perr := probeHello(ctx, inst.Socket)
		if perr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fail("forwarder: pasta (pid %d) control socket did not answer: %w (last error: %v)%s",
				pid, ctx.Err(), perr, logTail(*inst))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// stopQuietly stops a pasta that failed to come up, on its own short
// deadline (the caller's may be spent).
func stopQuietly(inst *Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = stopInstance(ctx, *inst)
	inst.PID = 0
}

// Stop stops the forwarder of the attachment in dir and everything its
// start left: it sends SIGTERM to the process in the PID file if that
// process is ours (see the package comment), to any process whose command
// line names this attachment's socket (a forwarder whose PID file was
// lost), and to any process that inherited OwnerEnv naming it (what a
// wrapper or a daemonizing pasta forked), waits for them to exit within
// ctx (and DefaultTimeout), sending SIGKILL when that takes longer than a
// second or half the time left, then removes the socket and the PID file.
// It returns nil when the processes, the socket, the PID file or dir are
// already gone; a PID file that does not hold a PID counts as lost. It
// never signals a process that is not ours. The logs are left for
// diagnosis; the caller removes dir when it wants it gone.
func Stop(ctx context.Context, dir string) error {
	inst, err := instanceFor(dir)
	if err != nil {
		return err
	}
	dir = filepath.Dir(inst.Socket)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	ctx, cancel := withTimeout(ctx, 0)
	defer cancel()
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := stopInstance(ctx, inst); err != nil {
		return fmt.Errorf("forwarder: stop pasta in %s: %w", dir, err)
	}
	return nil
}

func stopInstance(ctx context.Context, inst Instance) error {
	pid, ok, err := running(inst)
	if err != nil && !errors.Is(err, errMalformedPID) {
		return err
	}
	// Besides the process in the PID file: a forwarder whose PID file
	// was lost, and whatever a start of this attachment forked (a
	// wrapper's children, a daemon that outlived a failed start).
	pgid, err := readPIDFile(inst.PGIDFile)
	if err != nil {
		pgid = 0 // a damaged record of the group: the other ways still find ours
	}
	pids, err := findOwned(inst.Socket, pgid)
	if err != nil {
		return err
	}
	if ok && !slices.Contains(pids, pid) {
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal pasta (pid %d): %w", pid, err)
		}
	}
	for _, pid := range pids {
		if err := waitGone(ctx, pid, inst.Socket); err != nil {
			return err
		}
	}
	for _, p := range []string{inst.Socket, inst.PIDFile, inst.PGIDFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return nil
}

// waitGone waits until pid, ours and sent SIGTERM, is no longer ours and
// has finished exiting (see exited): gone, a zombie, or its PID taken by
// another process. It sends SIGKILL when that takes longer than a second
// or half the time left.
func waitGone(ctx context.Context, pid int, socket string) error {
	grace := time.Second
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)/2)
	}
	killAt := time.Now().Add(grace)
	killed := false
	backoff := time.Millisecond
	start := processStart(pid)
	for {
		if !processOwned(pid, socket) && (start == 0 || exited(pid, start)) {
			return nil
		}
		if !killed && time.Now().After(killAt) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill pasta (pid %d): %w", pid, err)
			}
			killed = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pasta (pid %d) did not exit: %w", pid, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}

// lockDir takes an exclusive lock on dir/lock, polling until ctx ends.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("forwarder: open lock file: %w", err)
	}
	backoff := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("forwarder: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("forwarder: lock %s held by another call: %w", path, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}

// sameFile reports whether the paths a and b name the same file (a
// network namespace may be given as /var/run/netns/X or /run/netns/X),
// comparing the strings when either cannot be examined.
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return false
	}
	return os.SameFile(sa, sb)
}
