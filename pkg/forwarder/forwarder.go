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
package forwarder

import (
	"context"
	"errors"
	"path/filepath"
	"time"
)

// File names inside an attachment directory.
const (
	SocketName  = "pasta.sock"
	PIDFileName = "pasta.pid"
	LogFileName = "pasta.log"
)

// DefaultPasta is the binary looked up in PATH when Config.Pasta is empty.
const DefaultPasta = "pasta"

// DefaultTimeout bounds Ensure and Stop when neither the context nor
// Config.Timeout does.
const DefaultTimeout = 5 * time.Second

// Config says how to run the forwarder of one attachment.
type Config struct {
	// Pasta is the pasta binary: a path, or a name looked up in PATH.
	// Empty means DefaultPasta.
	Pasta string
	// Args are extra arguments appended to pasta's command line (the
	// plugin's "pastaArgs"), e.g. "--map-guest-addr", "169.254.1.2".
	// Options that this package sets itself (-c, -P, -l, --netns, -f,
	// --runas, --config-net) are refused in Args.
	Args []string
	// NetNS is the path of the network namespace to attach to (CNI_NETNS).
	NetNS string
	// IfName is the name of the interface pasta creates in the namespace
	// (CNI_IFNAME, passed as --ns-ifname). Empty keeps pasta's default: the
	// name of the host's interface with the default route.
	IfName string
	// Dir is the per-attachment directory, created with mode 0700 when
	// missing; it holds the socket, the PID file and the log.
	Dir string
	// Timeout bounds Ensure (start plus waiting for the socket); zero
	// means DefaultTimeout. A deadline of the context applies as well.
	Timeout time.Duration
}

// Instance is a forwarder found or started by Ensure.
type Instance struct {
	Socket  string // control socket path (pasta -c)
	PIDFile string // PID file (pasta -P)
	LogFile string // pasta's log (pasta -l, plus its stdout and stderr)
	PID     int    // process id of the running pasta; 0 when not known
	// Started is true when Ensure started this pasta, false when it reused
	// a running one.
	Started bool
}

// Paths returns the socket, PID file and log paths inside dir. PID and
// Started are zero.
func Paths(dir string) Instance {
	return Instance{
		Socket:  filepath.Join(dir, SocketName),
		PIDFile: filepath.Join(dir, PIDFileName),
		LogFile: filepath.Join(dir, LogFileName),
	}
}

// Ensure returns the running forwarder of the attachment in cfg.Dir, or
// starts one. A running one is reused when its PID file names a live
// process whose command line holds this attachment's socket path and the
// socket answers with a hello. Otherwise any stale socket and PID file are
// removed and pasta is started; Ensure returns once the control socket
// sends its hello, within ctx and cfg.Timeout. pasta never inherits the
// caller's standard output or error (they go to the log file), and its
// standard input is /dev/null. On failure the tail of the log is part of
// the error and a half-started pasta is stopped.
func Ensure(ctx context.Context, cfg Config) (*Instance, error) {
	return nil, errors.New("forwarder: Ensure not implemented")
}

// Stop stops the forwarder of the attachment in dir: it sends SIGTERM to
// the process in the PID file if that process is ours (see the package
// comment), waits for it to exit within ctx (SIGKILL when ctx is nearly
// done), then removes the socket and the PID file. It returns nil when the
// process, the socket or the PID file is already gone. It never signals a
// process that is not ours. The log file is left for diagnosis; the
// caller removes dir when it wants it gone.
func Stop(ctx context.Context, dir string) error {
	return errors.New("forwarder: Stop not implemented")
}

// Running reports whether the forwarder of the attachment in dir runs:
// the PID file names a live process that is ours. ok is false with a nil
// error when there is no PID file, the process is gone, or the PID was
// reused by another process. err is set only when the state cannot be
// read (e.g. a malformed PID file or a permission error).
func Running(dir string) (pid int, ok bool, err error) {
	return 0, false, errors.New("forwarder: Running not implemented")
}

// CheckBinary reports an error when pasta cannot run a managed forwarder:
// the binary is missing (not found in PATH, or the path does not exist)
// or too old for a control socket (its --help does not offer
// --conf-path). For the plugin's STATUS.
func CheckBinary(ctx context.Context, pasta string) error {
	return errors.New("forwarder: CheckBinary not implemented")
}

// Attached reports whether the network namespace at netnsPath already has
// an interface other than loopback, i.e. another plugin configured it.
func Attached(netnsPath string) (bool, error) {
	return false, errors.New("forwarder: Attached not implemented")
}
