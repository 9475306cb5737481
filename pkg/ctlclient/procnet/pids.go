package procnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrMalformedPID marks a PID file whose content is not a PID.
var ErrMalformedPID = errors.New("malformed PID file")

// ErrNoPID marks a PID file that is empty: pasta creates the file before
// it writes the PID, so a start is under way, or one died in between.
var ErrNoPID = errors.New("PID file is empty")

// ParsePID decodes a PID file: a decimal process id, optionally followed
// by a newline, nothing else.
func ParsePID(b []byte) (int, error) {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrMalformedPID)
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != s {
		if len(b) > 32 {
			b = b[:32]
		}
		return 0, fmt.Errorf("%w: content %q", ErrMalformedPID, b)
	}
	return pid, nil
}

// ReadPIDFile is the one reader of a forwarder's PID file. A missing file
// is an error wrapping fs.ErrNotExist, an empty one ErrNoPID, other
// content ErrMalformedPID; each names the file.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read PID file: %w", err)
	}
	if len(b) == 0 {
		return 0, fmt.Errorf("PID file %s: %w", path, ErrNoPID)
	}
	pid, err := ParsePID(b)
	if err != nil {
		return 0, fmt.Errorf("PID file %s: %w", path, err)
	}
	return pid, nil
}

// Processes lists the process ids under /proc: the one scan of the
// process table (FindHolder, and the forwarder's search by command line).
func Processes() ([]int, error) {
	ents, err := os.ReadDir(Root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// EachHolder scans the processes' fd tables (only those the caller may
// read) for sockets whose inode match accepts, and calls fn with each
// process holding any, and their inodes, in the order of Processes,
// until fn returns false.
func EachHolder(match func(inode uint64) bool, fn func(pid int, inodes []uint64) bool) error {
	pids, err := Processes()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		var found []uint64
		_ = walkLinks(filepath.Join(Root, strconv.Itoa(pid), "fd"), func(link []byte) {
			if ino, ok := parseSocketLink(link); ok && match(ino) {
				found = append(found, ino)
			}
		})
		if len(found) > 0 && !fn(pid, found) {
			return nil
		}
	}
	return nil
}
