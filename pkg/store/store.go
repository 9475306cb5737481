package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// DefaultLockTimeout bounds Lock when the context has no deadline.
const DefaultLockTimeout = 30 * time.Second

const (
	recordSuffix = ".json"
	backupSuffix = ".bak" // after recordSuffix: NAME.json.bak
	lockSuffix   = ".lock"
	// maxRecordSize bounds what a record read takes in: 255 rules in each
	// of a few tables are well under a megabyte.
	maxRecordSize = 4 << 20
	dirMode       = 0o750
	fileMode      = 0o640
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

// fileName is the name, without suffix, of k's files in its network's
// directory.
func fileName(k Key) string { return escape(k.ContainerID) + "@" + escape(k.IfName) }

func (s *Store) base(k Key) string { return filepath.Join(s.NetworkDir(k.Network), fileName(k)) }

// RecordPath is the file of k's record.
func (s *Store) RecordPath(k Key) string { return s.base(k) + recordSuffix }

// BackupPath is the file of the backup copy of k's record.
func (s *Store) BackupPath(k Key) string { return s.RecordPath(k) + backupSuffix }

// LockPath is the lock file of k's record.
func (s *Store) LockPath(k Key) string { return s.base(k) + lockSuffix }

// Get reads k's record without locking. A missing record is an error
// wrapping ErrNotFound. A damaged record file is replaced by its backup
// copy, as Load does, silently.
func (s *Store) Get(k Key) (*Record, error) {
	r, _, err := s.Load(k)
	return r, err
}

// Load reads k's record without locking. When the record file is missing
// or cannot be decoded and its backup copy can, Load returns the backup's
// record and, as damaged, a *CorruptError naming the record file, for the
// caller to report. A missing record (neither file there) is an error
// wrapping ErrNotFound.
func (s *Store) Load(k Key) (rec *Record, damaged error, err error) {
	if err := k.Validate(); err != nil {
		return nil, nil, err
	}
	nd, err := s.networkDir(k.Network, false)
	if err != nil {
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	defer nd.Close()
	return load(nd, k)
}

// errMissing is a record file that is gone while its backup copy is not.
// It does not wrap fs.ErrNotExist: the record is not missing.
var errMissing = errors.New("the file is missing")

// load reads the record of k, falling back to its backup copy when the
// record file is damaged or missing, and returns the attachment's intent
// instead when it is active (see Locked.Arm). Writes keep the backup copy
// at the record's generation or the next one (see Locked.write), which
// claims at least every rule the attachment may have in a table, so the
// fallback never loses a rule; and they never leave a backup copy without
// a record file (the first write makes the record file first, Remove
// removes the backup first), so a backup copy alone means that the record
// file was lost, and it is the record. The fallback is not used for a
// record of a format version this package does not know: a newer plugin
// wrote it, and its backup may say less.
func load(nd *safefs.Dir, k Key) (*Record, error, error) {
	st, err := loadState(nd, k)
	return st.rec, st.damaged, err
}

// state is what load found of one attachment.
type state struct {
	rec        *Record // the record, or the active intent
	damaged    error   // the record file's *CorruptError when its backup copy was used
	fromIntent bool    // rec is the active intent
	lastIntent uint64  // the highest Intent of the record and the intent
}

func loadState(nd *safefs.Dir, k Key) (state, error) {
	rec, damaged, err := loadFiles(nd, k)
	intent, ierr := readIntent(nd, fileName(k)+lockSuffix, k)
	if ierr != nil {
		return state{}, ierr
	}
	st := state{rec: rec, damaged: damaged}
	if rec != nil {
		st.lastIntent = rec.Intent
	}
	if intent != nil {
		st.lastIntent = max(st.lastIntent, intent.Intent)
	}
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		// A record that cannot be read may or may not supersede the
		// intent: nothing is decided without it.
		return state{}, err
	case active(intent, rec):
		// The intent was written over what the record said then: it is
		// the record until a newer one is written.
		st.rec, st.fromIntent = intent, true
		return st, nil
	case err != nil:
		return state{}, err
	}
	return st, nil
}

// loadFiles reads the record file of k, or its backup copy (see load).
func loadFiles(nd *safefs.Dir, k Key) (*Record, error, error) {
	name := fileName(k) + recordSuffix
	path := nd.Join(name)
	r, err := readRecord(nd, name, k)
	var ce *CorruptError
	switch {
	case err == nil:
		return r, nil, nil
	case errors.Is(err, fs.ErrNotExist):
		ce = &CorruptError{Path: path, Err: errMissing}
	case !errors.As(err, &ce) || ce.Version != 0:
		return nil, nil, err
	}
	bname := name + backupSuffix
	bpath := nd.Join(bname)
	b, berr := readRecord(nd, bname, k)
	if berr != nil {
		if ce.Err == errMissing && errors.Is(berr, fs.ErrNotExist) {
			return nil, nil, err // neither file: no record
		}
		ce.Backup, ce.BackupErr = bpath, berr
		return nil, nil, ce
	}
	ce.Backup = bpath
	return b, ce, nil
}

// readRecord reads and decodes the record file name in nd, which must
// hold the record of k.
func readRecord(nd *safefs.Dir, name string, k Key) (*Record, error) {
	path := nd.Join(name)
	b, err := readRegular(nd, name, maxRecordSize)
	if err != nil {
		return nil, err
	}
	r, err := Decode(b)
	if err != nil {
		ce := &CorruptError{Path: path, Err: err}
		var ve *VersionError
		if errors.As(err, &ve) {
			ce.Version = ve.Version
		}
		return nil, ce
	}
	if r.Key() != k {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("file name says %s, contents say %s", k, r.Key())}
	}
	return r, nil
}

// readRegular reads the regular file name in nd, at most limit bytes.
func readRegular(nd *safefs.Dir, name string, limit int64) ([]byte, error) {
	path := nd.Join(name)
	f, err := nd.OpenFile(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("record: read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("longer than %d bytes", limit)}
	}
	return b, nil
}

// CorruptError is a record file that cannot be decoded. Backup names its
// backup copy when one was looked at, and BackupErr why that could not
// be used either.
type CorruptError struct {
	Path string
	Err  error
	// Version is the format version of a record this package does not
	// read (written by a newer plugin), or 0.
	Version   int
	Backup    string
	BackupErr error
}

func (e *CorruptError) Error() string {
	msg := "record " + e.Path + " is unreadable: " + e.Err.Error()
	if e.BackupErr != nil {
		msg += "; its backup copy " + e.Backup + " cannot be used either: " + e.BackupErr.Error()
	}
	return msg
}
func (e *CorruptError) Unwrap() error { return e.Err }

// VersionError is a record of a format version this package does not
// read.
type VersionError struct{ Version int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("record format version %d, this plugin reads %d (a newer passt-portmap wrote it)", e.Version, FormatVersion)
}

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
// file could not be read or decoded, nor its backup copy; Key is derived
// from its name. Damaged is set when Record comes from the backup copy
// (see Load); Path is the record file's, even when it is missing.
type Entry struct {
	Key     Key
	Path    string
	Record  *Record
	Damaged error
	Err     error
}

// List returns the records of one network, sorted by container ID and
// interface. A missing network directory is an empty list.
func (s *Store) List(network string) ([]Entry, error) {
	nd, err := s.networkDir(network, false)
	if missing(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	defer nd.Close()
	names, err := nd.Names()
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	var out []Entry
	for _, name := range names {
		// A record path that is not a regular file is listed with the
		// error that reading it gives (see safefs.Dir.OpenFile).
		if strings.HasPrefix(name, ".") {
			continue
		}
		if b, ok := strings.CutSuffix(name, backupSuffix); ok && strings.HasSuffix(b, recordSuffix) {
			// A backup copy alone is a record whose file was lost.
			if _, err := nd.Lstat(b); !missing(err) {
				continue
			}
			name = b
		}
		if b, ok := strings.CutSuffix(name, lockSuffix); ok {
			// A lock file alone may hold the intent of a call that
			// never wrote a record: it is the record then (see load).
			rec := b + recordSuffix
			if !lockAlone(nd, rec) {
				continue
			}
			name = rec
		}
		if !strings.HasSuffix(name, recordSuffix) {
			continue
		}
		e := Entry{Path: nd.Join(name)}
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
		e.Record, e.Damaged, e.Err = load(nd, e.Key)
		if errors.Is(e.Err, fs.ErrNotExist) {
			continue // a lock file without an intent: no record
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

// lockAlone reports whether the record file rec in nd and its backup copy
// are both missing.
func lockAlone(nd *safefs.Dir, rec string) bool {
	for _, n := range []string{rec, rec + backupSuffix} {
		if _, err := nd.Lstat(n); !missing(err) {
			return false
		}
	}
	return true
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
	nd, err := s.networkDir(k.Network, true)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	name := fileName(k) + lockSuffix
	path := nd.Join(name)
	wait := time.Millisecond
	for {
		f, err := nd.OpenFile(name, unix.O_RDWR|unix.O_CREAT, fileMode)
		if err != nil {
			nd.Close()
			return nil, fmt.Errorf("store: open lock: %w", err)
		}
		err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// The holder before us may have removed the record and
			// its lock file; a lock on an unlinked file locks nothing.
			if same, serr := samePath(nd, f, name); serr != nil {
				f.Close()
				nd.Close()
				return nil, fmt.Errorf("store: lock %s: %w", path, serr)
			} else if same {
				return &Locked{store: s, key: k, nd: nd, f: f}, nil
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			nd.Close()
			return nil, fmt.Errorf("store: lock %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			nd.Close()
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

// samePath reports whether f is the file name in nd now.
func samePath(nd *safefs.Dir, f *os.File, name string) (bool, error) {
	var a unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, err
	}
	b, err := nd.Lstat(name)
	if missing(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// Locked is a held record lock. It is used by one goroutine.
type Locked struct {
	store   *Store
	key     Key
	nd      *safefs.Dir // the network's directory, open while locked
	f       *os.File
	damaged error
	// lastIntent is the highest intent number read or armed, and
	// fromIntent says that the last Read returned the intent; intent
	// that the lock file may hold one.
	lastIntent uint64
	fromIntent bool
	intent     bool
}

// Key is the locked record's key.
func (l *Locked) Key() Key { return l.key }

// Read returns the record, or nil and no error when there is none. A
// damaged record file is replaced by its backup copy, as Load does;
// Damaged then says so, and the next Write repairs the record file.
func (l *Locked) Read() (*Record, error) {
	if l.f == nil {
		return nil, errors.New("store: read after unlock")
	}
	st, err := loadState(l.nd, l.key)
	l.damaged, l.fromIntent = st.damaged, st.fromIntent
	l.lastIntent = max(l.lastIntent, st.lastIntent)
	if fi, serr := l.f.Stat(); serr != nil || fi.Size() > 0 {
		l.intent = true
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return st.rec, err
}

// Damaged returns the *CorruptError of the record file when the last Read
// used the backup copy instead, else nil.
func (l *Locked) Damaged() error { return l.damaged }

// Write replaces the record atomically and durably: the record file is
// synced before it is renamed into place, so that a machine crash leaves
// the old record or the new one, never a torn one. The directory is not
// synced: a crash may bring the old record back, which names rules and
// forwarders that the crash ended too (a forwarder's tables live in its
// memory), and the plugin's DEL and GC succeed on those. One fsync per
// write. The record's key must be the locked one; Version is set,
// Updated when zero, and Intent to at least the last intent read or
// armed, which the record supersedes.
func (l *Locked) Write(r *Record) error { return l.write(r, true) }

// WriteUnsynced replaces the record as Write does, but does not wait for
// the disk: for a record of what a machine crash undoes anyway, such as
// a managed forwarder about to be started (a dead plugin process loses
// nothing: the rename is done).
func (l *Locked) WriteUnsynced(r *Record) error { return l.write(r, false) }

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
	r.Intent = max(r.Intent, l.lastIntent)
	b, err := Encode(r)
	if err != nil {
		return fmt.Errorf("store: encode record: %w", err)
	}
	rec := fileName(l.key) + recordSuffix
	names := []string{rec + backupSuffix, rec}
	for _, n := range names {
		if err := l.nd.RegularOrMissing(n); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	// The backup copy first, so that it is never older than the record
	// file; but the record file first when there is none, so that a
	// backup copy is never alone but for a lost record file (see load).
	if _, err := l.nd.Lstat(rec); missing(err) {
		names[0], names[1] = names[1], names[0]
	}
	// One fsync, of the record file: the copy is not synced on its own,
	// it only matters once the record file is damaged later, by when the
	// kernel has written it back.
	for _, n := range names {
		if err := l.nd.WriteAtomic(n, "."+n+tmpInfix, b, fileMode, durable && n == rec); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	l.damaged, l.fromIntent = nil, false
	if l.intent {
		// Superseded by its number already; emptied so that a record
		// file lost later cannot bring back an intent of the past.
		if err := l.disarm(); err != nil {
			return err
		}
		l.intent = false
	}
	return nil
}

// Remove removes the record, its intent and its lock file; a missing
// record is fine. The lock stays held until Unlock. Nothing is synced: a
// machine crash may bring the record back, naming what the crash ended
// (see Write).
func (l *Locked) Remove() error {
	if l.f == nil {
		return errors.New("store: remove after unlock")
	}
	// The intent first: with the record gone it would be read as the
	// record. Then the backup copy: alone, it would be read as the record.
	if err := l.disarm(); err != nil {
		return err
	}
	name := fileName(l.key)
	for _, n := range []string{name + recordSuffix + backupSuffix, name + recordSuffix, name + lockSuffix} {
		if err := l.nd.Remove(n); err != nil && !missing(err) {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// Drop releases the lock like Unlock, and first removes the lock file
// when there is no record (neither the record file nor its backup copy
// nor an intent in the lock file): a call that recorded nothing leaves
// nothing behind.
func (l *Locked) Drop() error {
	if l.f == nil {
		return nil
	}
	empty := true
	name := fileName(l.key)
	for _, n := range []string{name + recordSuffix, name + recordSuffix + backupSuffix} {
		if _, err := l.nd.Lstat(n); !missing(err) {
			empty = false
		}
	}
	if fi, err := l.f.Stat(); err != nil || fi.Size() > 0 {
		empty = false // an intent, armed or left by a call before
	}
	var err error
	if empty {
		if rerr := l.nd.Remove(name + lockSuffix); rerr != nil && !missing(rerr) {
			err = fmt.Errorf("store: %w", rerr)
		}
	}
	if uerr := l.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// Unlock releases the lock. It is safe to call twice.
func (l *Locked) Unlock() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	l.nd.Close()
	return err
}
