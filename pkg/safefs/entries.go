package safefs

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// randomSuffix is the random part of a temporary file's name.
func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Entry is one name of a directory read from a position (see ReadFrom).
type Entry struct {
	Name string
	// Next is the position after this entry: reading from it returns
	// the entries after this one.
	Next int64
}

// ReadFrom returns up to max names of d from the position off (0: the
// first), as the file system orders them, and whether the end was reached.
// A position is the file system's own cookie (getdents' d_off), stable
// across calls while the entry it follows exists: a caller can visit a
// large directory a few entries per call, in turns, without reading it
// whole each time. "." and ".." are left out.
func (d *Dir) ReadFrom(off int64, max int) (entries []Entry, end bool, err error) {
	fd, err := openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, false, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	defer unix.Close(fd)
	if off != 0 {
		if _, err := unix.Seek(fd, off, 0); err != nil {
			return nil, false, &os.PathError{Op: "seek", Path: d.path, Err: err}
		}
	}
	// A buffer of about max entries: a bigger one would make the kernel
	// read the whole directory of a node with many pods.
	buf := make([]byte, max*(19+64)+256)
	for len(entries) < max {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return entries, false, &os.PathError{Op: "getdents", Path: d.path, Err: err}
		}
		if n == 0 {
			return entries, true, nil
		}
		for b := buf[:n]; len(b) >= 19 && len(entries) < max; {
			// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16,
			// d_type u8, d_name NUL-terminated.
			next := int64(binary.NativeEndian.Uint64(b[8:16]))
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return entries, false, &os.PathError{Op: "getdents", Path: d.path, Err: errors.New("malformed entry")}
			}
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				entries = append(entries, Entry{Name: s, Next: next})
			}
			b = b[reclen:]
		}
	}
	return entries, false, nil
}
