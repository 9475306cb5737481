// Package forwarder manages a pasta process per CNI attachment ("managed
// forwarder"): it starts pasta attached to the container's network
// namespace with a control socket, a PID file and a log file in one
// directory per attachment, finds it again on a later call, stops it, and
// reads back what pasta configured in the namespace as a CNI result.
//
// Every file in the attachment directory is reached through package
// safefs (no link followed, regular files with one link, a FIFO never
// waited on), and the directory is the plugin's own (mode 0700): before a
// start the files pasta opens itself (socket, PID file, log) are removed,
// and anything at their names that is not what pasta made there is
// refused, so that pasta creates them anew where nobody else can put
// anything first.
//
// A managed pasta is known by its identity record (IdentFileName),
// written by the plugin once a start succeeded: the PID pasta wrote to its
// PID file, checked to be a live process of the plugin's uid started
// after the start began, with its start time, so that the record names
// that one process and no later one with the same PID. Stop and Running
// go by that record alone; what the forwarder forked is found through
// it. Nothing is ever found by a command line or an environment, which
// any process can forge.
//
// A start leaves nothing behind: pasta (or a wrapper standing for it) runs
// in a new process group, and the plugin holds the group's leader
// unreaped until the start is over, so the group id names no one else's
// group: a failed start kills the group, a successful one kills what is
// left in it besides the forwarder (a wrapper's helpers). A helper that
// leaves the group and its parent (setsid, and a parent that exits) cannot
// be told from any other process and is not tracked.
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
	"syscall"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
	"golang.org/x/sys/unix"
)

// File names inside an attachment directory.
const (
	SocketName  = "pasta.sock"
	PIDFileName = "pasta.pid"
	LogFileName = "pasta.log"
	OutFileName = "pasta.out"
	lockName    = "lock"
)

// Names are every name the plugin and pasta use in an attachment
// directory.
var Names = []string{SocketName, PIDFileName, LogFileName, OutFileName, IdentFileName, lockName}

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
	// missing; it holds the socket, the PID file, the logs and the
	// identity record. Its parent must be a directory of root's or the
	// plugin's user, not writable by others (see package safefs).
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
	Dir     string // the attachment directory, absolute
	Socket  string // control socket path (pasta -c)
	PIDFile string // PID file (pasta -P)
	LogFile string // pasta's log (pasta -l); pasta truncates it at start
	// OutFile holds pasta's standard output and error until it
	// daemonized: its start-up summary (addresses, DNS, rules) and any
	// error that made it exit before its log was open.
	OutFile string
	// IdentFile is the identity record of the forwarder (see Stop).
	IdentFile string
	PID       int // process id of the running pasta
	// Started is true when Ensure started this pasta, false when it reused
	// a running one.
	Started bool
}

// Paths returns the socket, PID file and log paths inside dir. PID and
// Started are zero.
func Paths(dir string) Instance {
	return Instance{
		Dir:       dir,
		Socket:    filepath.Join(dir, SocketName),
		PIDFile:   filepath.Join(dir, PIDFileName),
		LogFile:   filepath.Join(dir, LogFileName),
		OutFile:   filepath.Join(dir, OutFileName),
		IdentFile: filepath.Join(dir, IdentFileName),
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
// starts one. A running one (see Running) is reused when it serves
// cfg.NetNS and its socket answers with a hello; one attached to another
// namespace, or whose socket file is gone or refuses connections, is
// stopped and replaced (one that is only busy past the deadline is an
// error, not replaced). Otherwise what a forwarder before left is removed
// (see clearForStart) and pasta is started; Ensure returns once the
// control socket sends its hello, within ctx and cfg.Timeout. pasta never
// inherits the caller's standard output or error (they go to OutFile),
// and its standard input is /dev/null. On failure the tail of pasta's
// output and log is part of the error and a half-started pasta is
// stopped. Anything unsafe in the directory (see package safefs) is an
// *safefs.UnsafeError naming it.
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

	d, err := openDir(inst.Dir, true)
	if err != nil {
		return nil, fmt.Errorf("forwarder: attachment directory: %w", err)
	}
	defer d.Close()
	unlock, err := lockDir(ctx, d)
	if err != nil {
		return nil, err
	}
	defer unlock()

	p, id, ok, err := running(d, inst)
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	if ok {
		why := "whose identity record is lost"
		if id != nil {
			why = fmt.Sprintf("attached to %s", id.NetNS)
			if id.serves(cfg.NetNS) {
				err := probeSocket(ctx, d, inst.Socket)
				if err == nil {
					inst.PID = p.PID
					return &inst, nil
				}
				if !unreachable(err) {
					// Busy with another client past the deadline, or
					// something else answered: not ours to replace.
					return nil, fmt.Errorf("forwarder: pasta (pid %d) runs but does not answer: %w", p.PID, err)
				}
				why = fmt.Sprintf("without a control socket (%v)", err)
			}
		}
		// Same attachment, but of no use: other namespace, or its
		// socket file is gone. Replace it.
		if err := stopInstance(ctx, d, inst); err != nil {
			return nil, fmt.Errorf("forwarder: replace pasta (pid %d) %s: %w", p.PID, why, err)
		}
	}
	if err := start(ctx, cfg, d, &inst); err != nil {
		return nil, err
	}
	return &inst, nil
}

// probeSocket probes the control socket in d once its entry was checked to
// be a socket of ours (a link there would be followed by connect).
func probeSocket(ctx context.Context, d *safefs.Dir, socket string) error {
	if err := checkEntry(d, SocketName, unix.S_IFSOCK); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("connect to control socket %s: %w", socket, syscall.ENOENT)
		}
		return err
	}
	return probeHello(ctx, socket)
}

// start runs pasta and waits until its control socket answers.
func start(ctx context.Context, cfg Config, d *safefs.Dir, inst *Instance) error {
	// A forwarder of this attachment that lost its identity record, then
	// what it left.
	if err := stopInstance(ctx, d, *inst); err != nil {
		return fmt.Errorf("forwarder: clear the way: %w", err)
	}
	if err := clearForStart(d); err != nil {
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
		err := startOnce(ctx, cfg, d, inst, path)
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
func tapBusy(d *safefs.Dir) bool {
	b, err := d.ReadFile(OutFileName, maxOutput)
	return err == nil && bytes.Contains(b, []byte("TUNSETIFF")) && bytes.Contains(b, []byte("Device or resource busy"))
}

// startOnce runs pasta once and waits until its control socket answers,
// then records the forwarder's identity.
func startOnce(ctx context.Context, cfg Config, d *safefs.Dir, inst *Instance, path string) error {
	out, err := d.OpenFile(OutFileName, unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("forwarder: open pasta output file: %w", err)
	}
	defer out.Close()
	// What pasta creates itself must not be there (see clearForStart):
	// a failed try may have left them.
	if err := clearForStart(d); err != nil {
		return fmt.Errorf("forwarder: %w", err)
	}

	args := buildArgs(cfg, *inst, os.Geteuid())
	cmd := exec.Command(path, args...)
	// An *os.File is handed to the child as is: no pipe back to the
	// caller, so nothing pasta keeps open can hold the plugin's output.
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = "/"
	// The process and what it forks share a new process group, whose
	// leader is held unreaped until start returns (see the package
	// comment).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("forwarder: start %s for %s: %w", path, cfg.NetNS, err)
	}
	leader := proc{PID: cmd.Process.Pid, Start: processStart(cmd.Process.Pid)}
	// Reaped only when start returns: until then the exited process keeps
	// its PID, so the group id cannot name another group.
	defer func() { _ = cmd.Wait() }()
	var daemon proc
	fail := func(format string, a ...any) error {
		killGroup(leader.PID)
		stopStarted(daemon, leader)
		_ = removeLeft(d)
		return fmt.Errorf(format, a...)
	}

	// The foreground pasta exits once it has daemonized; its exit status
	// says whether set-up worked. The PID file is written before it exits.
	exit, err := waitExited(ctx, leader.PID)
	if err != nil {
		return fail("forwarder: start %s for %s: %w%s", path, cfg.NetNS, err, logTail(d))
	}
	if exit != "" {
		if tapBusy(d) {
			return fail("forwarder: start %s for %s: %s: %w%s", path, cfg.NetNS, exit, errTapBusy, logTail(d))
		}
		return fail("forwarder: start %s for %s: %s%s", path, cfg.NetNS, exit, logTail(d))
	}
	inst.Started = true

	pid, err := readPIDFile(d)
	if err != nil {
		return fail("forwarder: %w", err)
	}
	if pid == 0 {
		return fail("forwarder: pasta for %s wrote no PID to %s%s", cfg.NetNS, inst.PIDFile, logTail(d))
	}
	daemon, err = checkStarted(pid, leader)
	if err != nil {
		return fail("forwarder: pasta for %s %v%s", cfg.NetNS, err, logTail(d))
	}
	inst.PID = pid
	backoff := time.Millisecond
	for {
		peer, perr := probePeer(ctx, d, inst.Socket)
		if perr == nil {
			sock, serr := d.Lstat(SocketName)
			if serr != nil {
				return fail("forwarder: %w", serr)
			}
			id := &identity{Proc: daemon, UID: uint32(os.Geteuid()), PeerPID: peer,
				Socket: fileID{Dev: sock.Dev, Ino: sock.Ino}, NetNS: cfg.NetNS, NetNSID: statID(cfg.NetNS)}
			if err := writeIdent(d, id); err != nil {
				return fail("forwarder: record the identity of pasta (pid %d): %w", pid, err)
			}
			leftovers(leader, daemon)
			return nil
		}
		if !daemon.alive() {
			return fail("forwarder: pasta for %s exited after starting%s", cfg.NetNS, logTail(d))
		}
		var ue *safefs.UnsafeError
		if errors.As(perr, &ue) {
			return fail("forwarder: %w", perr)
		}
		select {
		case <-ctx.Done():
			return fail("forwarder: pasta (pid %d) control socket did not answer: %w (last error: %v)%s",
				pid, ctx.Err(), perr, logTail(d))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// checkStarted checks the process pasta named in its PID file: live, of
// the plugin's uid, and started no earlier than the start's own process
// (the group leader): a later process cannot have taken an earlier PID of
// ours, so this is the daemon of this start.
func checkStarted(pid int, leader proc) (proc, error) {
	p := proc{PID: pid, Start: processStart(pid)}
	switch {
	case p.Start == 0 || !p.alive():
		return proc{}, errors.New("exited after starting")
	case !ownedByUs(pid):
		return proc{}, fmt.Errorf("named process %d in its PID file, which is not of this user", pid)
	case leader.Start != 0 && p.Start < leader.Start:
		return proc{}, fmt.Errorf("named process %d in its PID file, which started before it", pid)
	}
	return p, nil
}

// stopStarted stops the daemon of a start that failed (if it got as far)
// and what it forked, on its own short deadline (the caller's may be
// spent). The group was killed already.
func stopStarted(daemon, leader proc) {
	if daemon.PID == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = stopProcs(ctx, append([]proc{daemon}, descendants(daemon)...))
}

// leftovers kills what is left in the start's process group once the
// forwarder runs: a wrapper's helpers (pasta's daemon leaves the group
// with setsid; if it has not, the group is left alone). The leader is
// still held unreaped, so the group is this start's.
func leftovers(leader, daemon proc) {
	if b, err := readStat(daemon.PID); err == nil {
		if g, ok := statPGID(b); ok && g == leader.PID {
			return
		}
	}
	killGroup(leader.PID)
}
