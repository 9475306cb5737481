package procnet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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

// ReadPIDFile reads a forwarder's PID file by its path: an attached
// forwarder's, which the configuration names (a managed one's is read
// through its directory: forwarder.ReadPID). A missing file
// is an error wrapping fs.ErrNotExist, an empty one ErrNoPID, other
// content ErrMalformedPID; each names the file. Only a regular file is
// read: the open follows no link at the last component and never waits
// (O_NONBLOCK), so a link, a FIFO or a device in its place is an error
// naming it, at once.
func ReadPIDFile(path string) (int, error) {
	b, err := readSmallRegular(path, 64)
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

// readSmallRegular reads the regular file at path, at most limit bytes
// (a longer one is malformed), without following a link at its last
// component or waiting on a FIFO.
func readSmallRegular(path string, limit int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link, not a PID file", path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file (mode %#o), not a PID file", path, st.Mode)
	}
	b := make([]byte, limit+1)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	if n > limit {
		return nil, fmt.Errorf("PID file %s: %w: longer than %d bytes", path, ErrMalformedPID, limit)
	}
	return b[:n], nil
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
