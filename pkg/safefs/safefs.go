// Package safefs is the one way the plugin touches files under its data
// directory: every file it creates, opens, reads, writes or removes there,
// and every directory on the way, is reached through a directory file
// descriptor, one path component at a time, without following a symbolic
// link (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, O_NOFOLLOW where
// openat2 is missing). What is found is checked on the open descriptor:
//
//   - a directory must be a real one, owned by root or by the plugin's
//     user, and not writable by group or others (who could otherwise put
//     links or other files in it);
//   - a file must be a regular file with exactly one link (a hard link to
//     a file elsewhere has two), owned by root or the plugin's user;
//   - a file is opened with O_NONBLOCK, so that a FIFO (or a device) in
//     its place never blocks the open, and is truncated only after it has
//     been checked, never by O_TRUNC;
//   - removals are unlinkat on the checked directory: they remove the
//     name, never what a link points to.
//
// Anything else is an *UnsafeError naming the path and what is wrong with
// it, and nothing is read, written or removed through it.
package safefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// UnsafeError is a path the plugin refuses to use: a file that is not a
// regular file of its own (a symbolic link, a directory, a FIFO, a socket,
// a device, a file with another link elsewhere), or a directory on the way
// that is a symbolic link, is owned by another user or is writable by
// others. Nothing is read, written or removed through it.
type UnsafeError struct {
	Path string
	What string // e.g. "is a symbolic link"
}

func (e *UnsafeError) Error() string {
	return e.Path + " " + e.What + "; passt-portmap uses only regular files and real directories of its own here and changed nothing through it: remove or fix it"
}

// Kind names a file type for messages ("is a symbolic link").
func Kind(mode uint32) string {
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
	case unix.S_IFREG:
		return "is a regular file"
	}
	return fmt.Sprintf("is of an unknown type (mode %#o)", mode)
}

// Dir is an open directory that passed the checks. It is used by one
// goroutine at a time; Close releases it.
type Dir struct {
	fd   int
	path string // for messages
}

// Path is the directory's path, for messages.
func (d *Dir) Path() string { return d.path }

// Join is the path of name in d, for messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// Fd is the directory's descriptor, valid until Close.
func (d *Dir) Fd() int { return d.fd }

// Close releases the directory.
func (d *Dir) Close() error {
	if d == nil || d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// euid is the plugin's user, which may own what it uses.
func euid() uint32 { return uint32(os.Geteuid()) }

// checkDirStat checks a directory's stat: a directory, owned by root or
// the plugin's user, not writable by group or others.
func checkDirStat(path string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &UnsafeError{Path: path, What: Kind(st.Mode) + ", not a directory"}
	}
	if st.Uid != 0 && st.Uid != euid() {
		return &UnsafeError{Path: path, What: fmt.Sprintf("is owned by uid %d, neither root nor this process (uid %d)", st.Uid, euid())}
	}
	if st.Mode&0o022 != 0 {
		return &UnsafeError{Path: path, What: fmt.Sprintf("is writable by group or others (mode %#o)", st.Mode&0o7777)}
	}
	return nil
}

// Open opens the directory at path, which may be reached through links
// (the path to the data directory is the administrator's), and checks it.
// A missing directory is an error wrapping fs.ErrNotExist.
func Open(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			var st unix.Stat_t
			if unix.Stat(path, &st) == nil {
				return nil, &UnsafeError{Path: path, What: Kind(st.Mode) + ", not a directory"}
			}
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	// Open follows a link to dataDir itself; the checks are of what it
	// names. A link there is still refused, as before: the administrator
	// names the directory, not a link to it.
	var lst unix.Stat_t
	if err := unix.Lstat(path, &lst); err == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
		unix.Close(fd)
		return nil, &UnsafeError{Path: path, What: "is a symbolic link, not a directory"}
	}
	if err := checkDirStat(path, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Dir{fd: fd, path: path}, nil
}

// Ensure opens the directory at path as Open does, creating it first
// (with mode, its missing parents with mode as well) when it is missing.
func Ensure(path string, mode uint32) (*Dir, error) {
	d, err := Open(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return d, err
	}
	if err := os.MkdirAll(filepath.Dir(path), os.FileMode(mode)); err != nil {
		return nil, err
	}
	if err := unix.Mkdir(path, mode); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return Open(path)
}

// checkName refuses a name that is not one component of a path.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("safefs: %q is not a file name", name)
	}
	return nil
}

// resolveHow is how every name is resolved: beneath the directory, no
// symbolic link anywhere (the name is one component, so that is the name
// itself), no /proc magic link.
const resolveHow = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openat opens name in dirfd without following a link.
func openat(dirfd int, name string, flag int, perm uint32) (int, error) {
	flag |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	for {
		how := unix.OpenHow{Flags: uint64(flag), Resolve: resolveHow}
		if flag&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
			how.Mode = uint64(perm)
		}
		fd, err := unix.Openat2(dirfd, name, &how)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN) && flag&unix.O_NONBLOCK == 0:
			continue // openat2 may ask to retry a racing rename
		case errors.Is(err, unix.ENOSYS):
			// A kernel before 5.6: one component with O_NOFOLLOW is
			// the same.
			for {
				fd, err = unix.Openat(dirfd, name, flag, perm)
				if !errors.Is(err, unix.EINTR) {
					return fd, err
				}
			}
		}
		return fd, err
	}
}

// Lstat returns the status of name in d, not following a link.
func (d *Dir) Lstat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := checkName(name); err != nil {
		return st, err
	}
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: d.Join(name), Err: err}
	}
	return st, nil
}

// Sub opens the directory name in d and checks it (see the package
// comment). With create, a missing one is made with mode (mkdirat: it is
// created in d, and a link of that name is never followed). A missing
// directory is an error wrapping fs.ErrNotExist.
func (d *Dir) Sub(name string, create bool, mode uint32) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	path := d.Join(name)
	if create {
		if err := unix.Mkdirat(d.fd, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
		}
	}
	fd, err := openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, d.refusal(name, err, "not a directory")
	}
	if err := checkFd(fd, path, checkDirStat); err != nil {
		return nil, err
	}
	return &Dir{fd: fd, path: path}, nil
}

// checkFd checks what fd, opened at path, is (check: checkDirStat or
// checkFileStat), and closes it when that fails.
func checkFd(fd int, path string, check func(string, *unix.Stat_t) error) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := check(path, &st); err != nil {
		unix.Close(fd)
		return err
	}
	return nil
}

// refusal turns the error of an open of name into an *UnsafeError when
// what is there is of the wrong type, naming it; want says what was
// wanted ("not a directory").
func (d *Dir) refusal(name string, err error, want string) error {
	path := d.Join(name)
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return &UnsafeError{Path: path, What: "is a symbolic link, " + want}
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENXIO), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENODEV):
		if st, serr := d.Lstat(name); serr == nil {
			return &UnsafeError{Path: path, What: Kind(st.Mode) + ", " + want}
		}
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// checkFileStat checks what an opened file is: a regular file, with one
// link, owned by root or the plugin's user.
func checkFileStat(path string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &UnsafeError{Path: path, What: Kind(st.Mode) + ", not a regular file"}
	}
	if st.Nlink != 1 {
		return &UnsafeError{Path: path, What: fmt.Sprintf("has %d hard links: another name of this file may lie outside the data directory", st.Nlink)}
	}
	if st.Uid != 0 && st.Uid != euid() {
		return &UnsafeError{Path: path, What: fmt.Sprintf("is owned by uid %d, neither root nor this process (uid %d)", st.Uid, euid())}
	}
	return nil
}

// OpenFile opens the regular file name in d (see the package comment):
// flag as for open(2); O_TRUNC truncates only once the file passed the
// checks; O_CREAT creates it with perm. A file of another type is refused
// before it is opened where it can be told (a device is never opened),
// and the opened descriptor is checked again. A missing file (without
// O_CREAT) is an error wrapping fs.ErrNotExist.
func (d *Dir) OpenFile(name string, flag int, perm uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	path := d.Join(name)
	if st, err := d.Lstat(name); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, &UnsafeError{Path: path, What: Kind(st.Mode) + ", not a regular file"}
		}
	}
	trunc := flag&unix.O_TRUNC != 0
	fd, err := openat(d.fd, name, flag&^unix.O_TRUNC|unix.O_NONBLOCK|unix.O_NOCTTY, perm)
	if err != nil {
		return nil, d.refusal(name, err, "not a regular file")
	}
	if err := checkFd(fd, path, checkFileStat); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	if trunc {
		if err := unix.Ftruncate(fd, 0); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "truncate", Path: path, Err: err}
		}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFile reads the regular file name in d, at most limit bytes; a file
// longer than that is an error.
func (d *Dir) ReadFile(name string, limit int64) ([]byte, error) {
	f, err := d.OpenFile(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is longer than %d bytes", f.Name(), limit)
	}
	return b, nil
}

// RegularOrMissing refuses a name in d that exists and is not a regular
// file of ours with one link: a rename over it would replace something
// that someone put there on purpose.
func (d *Dir) RegularOrMissing(name string) error {
	st, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return checkFileStat(d.Join(name), &st)
}

// Exists reports whether name is in d, whatever it is.
func (d *Dir) Exists(name string) (bool, error) {
	_, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// CreateTemp creates a new regular file in d named prefix followed by a
// random suffix (O_EXCL: nothing there is ever opened) with perm, and
// returns it and its name.
func (d *Dir) CreateTemp(prefix string, perm uint32) (*os.File, string, error) {
	for try := 0; ; try++ {
		name := prefix + randomSuffix()
		if err := checkName(name); err != nil {
			return nil, "", err
		}
		fd, err := openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, perm)
		if errors.Is(err, unix.EEXIST) && try < 100 {
			continue
		}
		if err != nil {
			return nil, "", &os.PathError{Op: "create", Path: d.Join(name), Err: err}
		}
		if err := unix.Fchmod(fd, perm); err != nil { // the umask may have cut it
			unix.Close(fd)
			_ = unix.Unlinkat(d.fd, name, 0)
			return nil, "", &os.PathError{Op: "chmod", Path: d.Join(name), Err: err}
		}
		return os.NewFile(uintptr(fd), d.Join(name)), name, nil
	}
}

// WriteAtomic replaces name in d with b: a temporary file named tmpPrefix
// and a random suffix, written (and with durable, synced), then renamed
// over name. What is at name now must be a regular file of ours or
// nothing (RegularOrMissing). The directory itself is not synced (see
// Sync).
func (d *Dir) WriteAtomic(name, tmpPrefix string, b []byte, perm uint32, durable bool) (err error) {
	if err := d.RegularOrMissing(name); err != nil {
		return err
	}
	f, tmp, err := d.CreateTemp(tmpPrefix, perm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = unix.Unlinkat(d.fd, tmp, 0)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if durable {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", f.Name(), err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err = unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(tmp), New: d.Join(name), Err: err}
	}
	return nil
}

// Rename renames oldName in d to newName in d, never replacing what is
// at newName (renameat2 RENAME_NOREPLACE: an error wrapping fs.ErrExist
// then). Links are renamed, never followed.
func (d *Dir) Rename(oldName, newName string) error {
	for _, n := range []string{oldName, newName} {
		if err := checkName(n); err != nil {
			return err
		}
	}
	for {
		err := unix.Renameat2(d.fd, oldName, d.fd, newName, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: d.Join(oldName), New: d.Join(newName), Err: err}
		}
		return nil
	}
}

// Remove removes the name from d (never what a link there points to): a
// file, a link, a socket, a FIFO, or an empty directory. A missing name is
// an error wrapping fs.ErrNotExist.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := unix.Unlinkat(d.fd, name, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
		err = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// maxDepth bounds RemoveAll's descent: the plugin makes no directory
// deeper than one level in its own.
const maxDepth = 8

// RemoveAll removes name from d and, when it is a directory, everything
// in it, through descriptors, never following a link. A missing name is
// success.
func (d *Dir) RemoveAll(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := removeAllAt(d.fd, name, d.Join(name), maxDepth); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func removeAllAt(dirfd int, name, path string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	if depth == 0 {
		return &UnsafeError{Path: path, What: "is a directory nested too deep for passt-portmap's own"}
	}
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	names, rerr := f.Readdirnames(-1)
	if rerr == nil {
		for _, n := range names {
			if err := removeAllAt(fd, n, filepath.Join(path, n), depth-1); err != nil {
				f.Close()
				return err
			}
		}
	}
	f.Close()
	if rerr != nil {
		return &os.PathError{Op: "readdir", Path: path, Err: rerr}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}

// Names lists the names in d, in the order the file system gives them.
func (d *Dir) Names() ([]string, error) {
	fd, err := openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: d.path, Err: err}
	}
	return names, nil
}

// Sync makes the directory's entries durable (fsync of the directory).
func (d *Dir) Sync() error {
	for {
		err := unix.Fsync(d.fd)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "fsync", Path: d.path, Err: err}
		}
		return nil
	}
}
