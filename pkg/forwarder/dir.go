package forwarder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// dirMode is the attachment directory's mode: only the plugin's user may
// put anything in it, so that nobody else can place a file where pasta
// opens its own (socket, PID file, log) before it does.
const dirMode = 0o700

// openDir opens the attachment directory at path (absolute) through
// package safefs: its parent is checked (a real directory of root's or
// ours, not writable by others), then the directory itself is opened in
// it without following a link and checked; with create, a missing one is
// made with mode 0700. A missing directory is an error wrapping
// fs.ErrNotExist.
func openDir(path string, create bool) (*safefs.Dir, error) {
	parent, err := safefs.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	return parent.Sub(filepath.Base(path), create, dirMode)
}

// lockDir takes an exclusive lock on the directory's lock file, polling
// until ctx ends.
func lockDir(ctx context.Context, d *safefs.Dir) (unlock func(), err error) {
	f, err := d.OpenFile(lockName, unix.O_CREAT|unix.O_RDWR, 0o600)
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
			return nil, fmt.Errorf("forwarder: lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("forwarder: lock %s held by another call: %w", f.Name(), ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}

// pastaFiles are the files pasta opens itself, by name, in the attachment
// directory, with the type each must have: they are removed before a
// start, so that pasta creates them anew in a directory only the plugin's
// user can write to.
var pastaFiles = []struct {
	name string
	mode uint32
}{
	{SocketName, unix.S_IFSOCK},
	{PIDFileName, unix.S_IFREG},
	{LogFileName, unix.S_IFREG},
}

// clearForStart removes what the last forwarder left of pasta's own files
// and of the identity record, refusing (*safefs.UnsafeError) anything at
// their names that is not what pasta or the plugin made there: a link, a
// FIFO, a directory, a file with another link elsewhere. The caller has
// made sure that no forwarder of the attachment runs.
func clearForStart(d *safefs.Dir) error {
	files := append(pastaFiles[:len(pastaFiles):len(pastaFiles)], struct {
		name string
		mode uint32
	}{IdentFileName, unix.S_IFREG})
	for _, f := range files {
		if err := checkEntry(d, f.name, f.mode); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		if err := d.Remove(f.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// checkEntry checks that name in d is of type mode (unix.S_IFSOCK,
// unix.S_IFREG), with one link, owned by root or the plugin's user. A
// missing one is an error wrapping fs.ErrNotExist.
func checkEntry(d *safefs.Dir, name string, mode uint32) error {
	st, err := d.Lstat(name)
	if err != nil {
		return err
	}
	path := d.Join(name)
	if st.Mode&unix.S_IFMT != mode {
		return &safefs.UnsafeError{Path: path, What: safefs.Kind(st.Mode) + ", not what passt-portmap or pasta makes there"}
	}
	if st.Nlink != 1 {
		return &safefs.UnsafeError{Path: path, What: fmt.Sprintf("has %d hard links: another name of this file may lie outside the data directory", st.Nlink)}
	}
	if st.Uid != 0 && st.Uid != uint32(unix.Geteuid()) {
		return &safefs.UnsafeError{Path: path, What: fmt.Sprintf("is owned by uid %d, neither root nor this process", st.Uid)}
	}
	return nil
}

// removeLeft removes pasta's socket and PID file and the identity record
// once the forwarder is stopped; the logs stay for diagnosis. Only names
// are removed (unlinkat): whatever they are, nothing they point to.
func removeLeft(d *safefs.Dir) error {
	for _, name := range []string{SocketName, PIDFileName, IdentFileName} {
		if err := d.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ReadPID reads the PID file of the forwarder in the attachment
// directory dir (opened as openDir does): 0 when there is none yet.
func ReadPID(dir string) (int, error) {
	d, err := openDir(dir, false)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	return readPIDFile(d)
}

// readPIDFile returns the PID in the directory's PID file; (0, nil) when
// it does not exist or is empty (pasta creates the file before it writes
// the PID: a start still under way, or one that died in between).
func readPIDFile(d *safefs.Dir) (int, error) {
	b, err := d.ReadFile(PIDFileName, 64)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	pid, err := parsePID(b)
	if err != nil {
		return 0, fmt.Errorf("PID file %s: %w", d.Join(PIDFileName), err)
	}
	return pid, nil
}

// logTail returns the last lines of pasta's output and log, prefixed for
// appending to an error message; "" when both are empty or unreadable.
func logTail(d *safefs.Dir) string {
	var parts []string
	for _, name := range []string{OutFileName, LogFileName} {
		if t := tailLines(d, name, 6, 4096); t != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", name, t))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

// tailLines returns up to n last non-empty lines of the last limit bytes of
// the file name in d, joined with " | ".
func tailLines(d *safefs.Dir, name string, n int, limit int64) string {
	f, err := d.OpenFile(name, unix.O_RDONLY, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-limit, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// maxOutput bounds what is read of pasta's start-up output.
const maxOutput = 1 << 20

// CheckSocket checks that the control socket in the attachment directory
// dir is a socket of root's or the plugin's user, with one link, before a
// client connects to it (connect follows a link): an *safefs.UnsafeError
// when it is something else, an error wrapping fs.ErrNotExist when there
// is none.
func CheckSocket(dir string) error {
	inst, err := instanceFor(dir)
	if err != nil {
		return err
	}
	d, err := openDir(inst.Dir, false)
	if err != nil {
		return err
	}
	defer d.Close()
	return checkEntry(d, SocketName, unix.S_IFSOCK)
}
