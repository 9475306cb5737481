package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// UnsafeError is a path the store refuses to use: a record, backup or lock
// file that is not a regular file (a symbolic link, a directory, a FIFO, a
// device), or a directory on the way that is a symbolic link, is owned by
// another user or is writable by others. Nothing is read, written or
// removed through it.
type UnsafeError struct {
	Path string
	What string // e.g. "is a symbolic link"
}

func (e *UnsafeError) Error() string {
	return e.Path + " " + e.What + "; passt-portmap uses only regular files and real directories of its own here and changed nothing through it: remove or fix it"
}

// kind names a file type for messages.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "is a symbolic link"
	case unix.S_IFDIR:
		return "is a directory"
	case unix.S_IFIFO:
		return "is a FIFO"
	case unix.S_IFCHR:
		return "is a character device"
	case unix.S_IFBLK:
		return "is a block device"
	case unix.S_IFSOCK:
		return "is a socket"
	}
	return fmt.Sprintf("is not a regular file (mode %#o)", mode)
}

// openRegular opens path as a regular file: a file of another type is
// refused before it is opened (a device is never opened), the open does
// not follow a symbolic link (O_NOFOLLOW) and cannot hang on a FIFO
// (O_NONBLOCK), and the opened descriptor is checked again, in case the
// path changed in between. flag may hold O_CREAT.
func openRegular(path string, flag int, perm uint32) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, &UnsafeError{Path: path, What: kind(st.Mode)}
		}
	} else if !errors.Is(err, unix.ENOENT) || flag&unix.O_CREAT == 0 {
		return nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, perm)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, &UnsafeError{Path: path, What: "is a symbolic link"}
	case errors.Is(err, unix.EISDIR):
		return nil, &UnsafeError{Path: path, What: "is a directory"}
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &UnsafeError{Path: path, What: kind(st.Mode)}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// regularOrMissing refuses a path that exists and is not a regular file:
// a rename over it would replace a link, a FIFO or a device that someone
// put there on purpose.
func regularOrMissing(path string) error {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &UnsafeError{Path: path, What: kind(st.Mode)}
	}
	return nil
}

// CheckDir checks a directory the plugin keeps state in: a real directory
// (not a symbolic link to one), owned by root or by the effective user,
// and not writable by group or others, who could otherwise put links or
// other files in it. A missing directory is an error wrapping
// fs.ErrNotExist.
func CheckDir(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &UnsafeError{Path: path, What: kind(st.Mode) + ", not a directory"}
	}
	if uid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != uid {
		return &UnsafeError{Path: path, What: fmt.Sprintf("is owned by uid %d, neither root nor this process (uid %d)", st.Uid, uid)}
	}
	if st.Mode&0o022 != 0 {
		return &UnsafeError{Path: path, What: fmt.Sprintf("is writable by group or others (mode %#o)", st.Mode&0o7777)}
	}
	return nil
}

// EnsureDir creates path when it is missing (its parents as MkdirAll
// does, itself with mode 0750) and checks it with CheckDir.
func EnsureDir(path string) error {
	err := CheckDir(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Mkdir(path, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("store: %w", err)
	}
	return CheckDir(path)
}
