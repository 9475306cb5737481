package store

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// recordFiles is how many files a record takes: the record file, its
// backup copy and its lock file, and one temporary file while written.
const recordFiles = 4

// Room checks that the store can take a record of size bytes now,
// without writing anything: its directory is safe (reached and checked
// as every write reaches it, see package safefs) and writable (access(2)
// on the opened directory: not on a file system mounted read-only, not
// denied to this process), and its file system (fstatfs) has size bytes
// and recordFiles inodes free for this process. A call every few
// seconds, as a runtime's readiness check makes, costs a few system
// calls and no disk write. A failure wraps EROFS, EACCES or ENOSPC.
func (s *Store) Room(size int) error {
	d, err := s.root(true)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Faccessat(d.Fd(), ".", unix.W_OK, 0); err != nil {
		return fmt.Errorf("%s cannot be written to: %w", d.Path(), err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(d.Fd(), &st); err != nil {
		return &os.PathError{Op: "statfs", Path: d.Path(), Err: err}
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("%s is on a file system mounted read-only: %w", d.Path(), unix.EROFS)
	}
	if free := st.Bavail * uint64(st.Bsize); free < uint64(size) {
		return fmt.Errorf("%s has %d bytes free, a record needs up to %d: %w", d.Path(), free, size, unix.ENOSPC)
	}
	// A file system without an inode count (Files 0) has no such limit.
	if st.Files > 0 && st.Ffree < recordFiles {
		return fmt.Errorf("%s has %d inodes free, a record needs %d: %w", d.Path(), st.Ffree, recordFiles, unix.ENOSPC)
	}
	return nil
}
