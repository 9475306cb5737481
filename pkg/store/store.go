package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockTimeout bounds Lock when the context has no deadline.
const DefaultLockTimeout = 30 * time.Second

const (
	recordSuffix = ".json"
	lockSuffix   = ".lock"
	dirMode      = 0o750
	fileMode     = 0o640
)

// ErrNotFound is returned (wrapped) for a missing record.
var ErrNotFound = fs.ErrNotExist

// Store is the record directory. It holds no state besides its path and
// is safe for concurrent use by goroutines and processes.
type Store struct {
	Dir string
}

// New returns the store under dir.
func New(dir string) *Store { return &Store{Dir: dir} }

// escape maps a name component to a file name part: bytes other than
// [A-Za-z0-9_.-] become %XX, and so does a leading dot, so the result is
// never "." or ".." and never holds '/' or the '@' separator.
func escape(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0
		if ok {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// unescape reverses escape.
func unescape(s string) (string, error) {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		var c byte
		if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err != nil {
			return "", fmt.Errorf("bad escape in %q: %w", s, err)
		}
		sb.WriteByte(c)
		i += 2
	}
	return sb.String(), nil
}

// NetworkDir is the directory of one network's records.
func (s *Store) NetworkDir(network string) string {
	return filepath.Join(s.Dir, escape(network))
}

func (s *Store) base(k Key) string {
	return filepath.Join(s.NetworkDir(k.Network), escape(k.ContainerID)+"@"+escape(k.IfName))
}

// RecordPath is the file of k's record.
func (s *Store) RecordPath(k Key) string { return s.base(k) + recordSuffix }

// LockPath is the lock file of k's record.
func (s *Store) LockPath(k Key) string { return s.base(k) + lockSuffix }

// Get reads k's record without locking. A missing record is an error
// wrapping ErrNotFound.
func (s *Store) Get(k Key) (*Record, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return readRecord(s.RecordPath(k))
}

func readRecord(path string) (*Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	r, err := Decode(b)
	if err != nil {
		return nil, &CorruptError{Path: path, Err: err}
	}
	return r, nil
}

// CorruptError is a record file that cannot be decoded.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string { return "record " + e.Path + " is unreadable: " + e.Err.Error() }
func (e *CorruptError) Unwrap() error { return e.Err }

// BusyError is a lock not obtained before the deadline.
type BusyError struct {
	Path string
	Err  error // the context's error
}

func (e *BusyError) Error() string {
	return "lock " + e.Path + " is held by another process: " + e.Err.Error()
}
func (e *BusyError) Unwrap() error { return e.Err }

// Entry is one record found by List. Err is set (and Record nil) when the
// file could not be read or decoded; Key is then derived from its name.
type Entry struct {
	Key    Key
	Path   string
	Record *Record
	Err    error
}

// List returns the records of one network, sorted by container ID and
// interface. A missing network directory is an empty list.
func (s *Store) List(network string) ([]Entry, error) {
	dir := s.NetworkDir(network)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	var out []Entry
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, recordSuffix) || strings.HasPrefix(name, ".") || !de.Type().IsRegular() {
			continue
		}
		e := Entry{Path: filepath.Join(dir, name)}
		cid, ifn, ok := strings.Cut(strings.TrimSuffix(name, recordSuffix), "@")
		if !ok {
			continue
		}
		if e.Key.ContainerID, err = unescape(cid); err != nil {
			continue
		}
		if e.Key.IfName, err = unescape(ifn); err != nil {
			continue
		}
		e.Key.Network = network
		e.Record, e.Err = readRecord(e.Path)
		if e.Err == nil && e.Record.Key() != e.Key {
			e.Err = &CorruptError{Path: e.Path, Err: fmt.Errorf("file name says %s, contents say %s", e.Key, e.Record.Key())}
			e.Record = nil
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.ContainerID != b.ContainerID {
			return a.ContainerID < b.ContainerID
		}
		return a.IfName < b.IfName
	})
	return out, nil
}

// Lock takes the exclusive lock of k's record, creating the directories
// as needed, and returns a handle to read, write and remove the record.
// It waits while another holder has it, until ctx is done (or
// DefaultLockTimeout when ctx has no deadline), then returns a *BusyError.
func (s *Store) Lock(ctx context.Context, k Key) (*Locked, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultLockTimeout)
		defer cancel()
	}
	if err := os.MkdirAll(s.NetworkDir(k.Network), dirMode); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := s.LockPath(k)
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
		if err != nil {
			return nil, fmt.Errorf("store: open lock: %w", err)
		}
		err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// The holder before us may have removed the record and
			// its lock file; a lock on an unlinked file locks nothing.
			if same, serr := samePath(f, path); serr != nil {
				f.Close()
				return nil, fmt.Errorf("store: lock %s: %w", path, serr)
			} else if same {
				return &Locked{store: s, key: k, f: f}, nil
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("store: lock %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &BusyError{Path: path, Err: ctx.Err()}
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func samePath(f *os.File, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &b); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// Locked is a held record lock. It is used by one goroutine.
type Locked struct {
	store *Store
	key   Key
	f     *os.File
}

// Key is the locked record's key.
func (l *Locked) Key() Key { return l.key }

// Read returns the record, or nil and no error when there is none.
func (l *Locked) Read() (*Record, error) {
	r, err := readRecord(l.store.RecordPath(l.key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return r, err
}

// Write replaces the record atomically and durably (fsync of the file
// and of its directory). The record's key must be the locked one; Version
// is set, and Updated when zero.
func (l *Locked) Write(r *Record) error { return l.write(r, true) }

// WriteIntent replaces the record atomically but does not wait for the
// disk: for a record that matters only while the forwarder it describes
// runs, such as the pending rules an ADD writes ahead of its transaction.
// The forwarder's tables live in its memory, so a machine crash that
// loses the write loses those tables too; a dead plugin process loses
// nothing, since the rename is done.
func (l *Locked) WriteIntent(r *Record) error { return l.write(r, false) }

func (l *Locked) write(r *Record, durable bool) error {
	if l.f == nil {
		return errors.New("store: write after unlock")
	}
	if r.Key() != l.key {
		return fmt.Errorf("store: record of %s written under the lock of %s", r.Key(), l.key)
	}
	r.Version = FormatVersion
	if r.Updated.IsZero() {
		r.Updated = time.Now().UTC()
	}
	b, err := Encode(r)
	if err != nil {
		return fmt.Errorf("store: encode record: %w", err)
	}
	return writeAtomic(l.store.RecordPath(l.key), b, durable)
}

// Remove removes the record and its lock file; a missing record is fine.
// The lock stays held until Unlock.
func (l *Locked) Remove() error {
	if l.f == nil {
		return errors.New("store: remove after unlock")
	}
	path := l.store.RecordPath(l.key)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Remove(l.store.LockPath(l.key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// Unlock releases the lock. It is safe to call twice.
func (l *Locked) Unlock() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// writeAtomic replaces path with b by a rename; durable also fsyncs the
// file before and the directory after it.
func writeAtomic(path string, b []byte, durable bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(fileMode); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("store: write %s: %w", tmp, err)
	}
	if durable {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("store: fsync %s: %w", tmp, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: open dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: fsync %s: %w", dir, err)
	}
	return nil
}
