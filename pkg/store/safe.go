package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// UnsafeError is a path the store refuses to use: a record, backup or
// lock file that is not a regular file of its own with one link (a
// symbolic link, a directory, a FIFO, a device, a hard link), or a
// directory on the way that is a symbolic link, is owned by another user
// or is writable by others. Nothing is read, written or removed through
// it. It is the one kind of refusal of package safefs, through which the
// store reaches every file.
type UnsafeError = safefs.UnsafeError

// CheckDir checks a directory the plugin keeps state in: a real directory
// (not a symbolic link to one), owned by root or by the effective user,
// and not writable by group or others, who could otherwise put links or
// other files in it. A missing directory is an error wrapping
// fs.ErrNotExist.
func CheckDir(path string) error {
	d, err := safefs.Open(path)
	if err != nil {
		return err
	}
	return d.Close()
}

// EnsureDir creates path when it is missing (its parents as MkdirAll
// does, itself with mode 0750) and checks it with CheckDir.
func EnsureDir(path string) error {
	d, err := safefs.Ensure(path, dirMode)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return d.Close()
}

// root opens the store's directory: its parent (the data directory, which
// may be reached through links) is opened and checked, then the store's
// directory in it, without following a link. With create, missing ones
// are made.
func (s *Store) root(create bool) (*safefs.Dir, error) {
	parent := filepath.Dir(s.Dir)
	var (
		p   *safefs.Dir
		err error
	)
	if create {
		p, err = safefs.Ensure(parent, dirMode)
	} else {
		p, err = safefs.Open(parent)
	}
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Sub(filepath.Base(s.Dir), create, dirMode)
}

// networkDir opens the directory of network's records (see root).
func (s *Store) networkDir(network string, create bool) (*safefs.Dir, error) {
	r, err := s.root(create)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Sub(escape(network), create, dirMode)
}

// missing reports whether err says a directory or file does not exist.
func missing(err error) bool { return errors.Is(err, fs.ErrNotExist) }
