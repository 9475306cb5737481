package forwarder

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
)

// errMalformedPID marks a PID file whose content is not a PID.
var errMalformedPID = procnet.ErrMalformedPID

// parsePID decodes a PID file (procnet.ParsePID).
func parsePID(b []byte) (int, error) { return procnet.ParsePID(b) }

// proc is one process as the plugin knows it: its id and its start time
// (field 22 of /proc/PID/stat, in clock ticks since boot). A PID is
// reused; the pair is not.
type proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func (p proc) String() string { return fmt.Sprintf("pid %d", p.PID) }

// statFields returns the fields of /proc/PID/stat after the command name
// (which may hold spaces and parentheses, so the fields are counted after
// the last ')'): field 3 (the state) is the first.
func statFields(b []byte) ([]string, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(b[i+1:])), true
}

// statLife returns the state letter and the start time (in clock ticks
// since boot) in the content of /proc/PID/stat, fields 3 and 22.
func statLife(b []byte) (state byte, start uint64, ok bool) {
	f, ok := statFields(b)
	if !ok || len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// statPGID returns the process group id in the content of /proc/PID/stat
// (field 5).
func statPGID(b []byte) (int, bool) {
	f, ok := statFields(b)
	if !ok || len(f) < 3 {
		return 0, false
	}
	g, err := strconv.Atoi(f[2])
	if err != nil || g <= 0 {
		return 0, false
	}
	return g, true
}

func readStat(pid int) ([]byte, error) {
	return os.ReadFile(fmt.Sprintf("%s/%d/stat", procnet.Root, pid))
}

// processStart returns the start time of pid, or 0 when it cannot be read.
func processStart(pid int) uint64 {
	b, err := readStat(pid)
	if err != nil {
		return 0
	}
	_, start, _ := statLife(b)
	return start
}

// exited reports whether pid, which started at start (0: unknown), has
// finished exiting: gone, a zombie, or its PID taken by a later process.
func exited(pid int, start uint64) bool {
	b, err := readStat(pid)
	if err != nil {
		return true
	}
	state, now, ok := statLife(b)
	if !ok {
		return true
	}
	return state == 'Z' || state == 'X' || (start != 0 && now != start)
}

// alive reports whether p is still the process it was: live, not a
// zombie, started when recorded.
func (p proc) alive() bool { return p.PID > 0 && p.Start != 0 && !exited(p.PID, p.Start) }

// statusUIDs parses the "Uid:" line of /proc/PID/status: real, effective,
// saved and file system uid.
func statusUIDs(b []byte) ([4]uint32, bool) {
	var out [4]uint32
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 4 {
			return out, false
		}
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return out, false
			}
			out[i] = uint32(v)
		}
		return out, true
	}
	return out, false
}

// ownedByUs reports whether every uid of pid (real, effective, saved, file
// system) is the plugin's own: only such a process may be signalled.
// /proc/PID/status is readable for every process, non-dumpable ones too.
func ownedByUs(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/status", procnet.Root, pid))
	if err != nil {
		return false
	}
	uids, ok := statusUIDs(b)
	if !ok {
		return false
	}
	me := uint32(os.Geteuid())
	for _, u := range uids {
		if u != me {
			return false
		}
	}
	return true
}

// maxDescendants bounds what descendants collects: pasta forks nothing,
// a wrapper a few helpers.
const maxDescendants = 64

// descendants returns the live processes below p, found through p itself
// (/proc/PID/task/*/children, recursively): never through a name or an
// environment that another process could carry. Only processes of the
// plugin's own uid are returned; a child of another uid (a setuid program)
// is not followed.
func descendants(p proc) []proc {
	var out []proc
	queue := []int{p.PID}
	seen := map[int]bool{p.PID: true}
	for len(queue) > 0 && len(out) < maxDescendants {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children(pid) {
			if seen[c] || len(out) >= maxDescendants {
				continue
			}
			seen[c] = true
			start := processStart(c)
			if start == 0 || !ownedByUs(c) {
				continue
			}
			out = append(out, proc{PID: c, Start: start})
			queue = append(queue, c)
		}
	}
	return out
}

// children lists the children of every thread of pid.
func children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("%s/%d/task", procnet.Root, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("%s/%d/task/%s/children", procnet.Root, pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil && c > 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

// signal sends sig to p when it is still the process recorded and of our
// uid; a process that is gone is not an error. The process is pinned with
// a pidfd before it is checked, so that its PID cannot pass to another
// process between the check and the signal.
func signal(p proc, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("open pasta (pid %d): %w", p.PID, err)
		}
		fd = -1 // a kernel before 5.3: the check and kill(2)
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if !p.alive() || !ownedByUs(p.PID) {
		return nil
	}
	if fd >= 0 {
		err = unix.PidfdSendSignal(fd, sig, nil, 0)
	} else {
		err = syscall.Kill(p.PID, sig)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal pasta (pid %d): %w", p.PID, err)
	}
	return nil
}

// notExist reports whether err says that a /proc entry is gone.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}
