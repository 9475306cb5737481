package store

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

const (
	tmpInfix    = ".tmp-"   // temporary files of writes: .NAME.json.tmp-*, .NAME.json.bak.tmp-*
	probePrefix = ".probe-" // files of an older STATUS in the store's directory
)

// Sweep removes what calls that were refused or killed left in the
// directory of network: temporary files of writes that never finished,
// and the lock files of attachments that have no record.
// It touches an attachment's files only while it holds that attachment's
// lock, taken without waiting: an attachment that a call holds is left
// for a later sweep. It also removes probe files that no call holds. It
// returns the paths it removed.
func (s *Store) Sweep(network string) ([]string, error) {
	var removed []string
	nd, err := s.networkDir(network, false)
	if missing(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("sweep records: %w", err)
	}
	defer nd.Close()
	des, err := nd.Names()
	if err != nil {
		return nil, fmt.Errorf("sweep records: %w", err)
	}
	// Group the files by attachment: NAME is CONTAINERID@IFNAME, escaped.
	type files struct{ record, tmp, lock bool }
	byName := map[string]*files{}
	var names []string
	get := func(name string) *files {
		f := byName[name]
		if f == nil {
			f = &files{}
			byName[name] = f
			names = append(names, name)
		}
		return f
	}
	for _, de := range des {
		name, kind := classify(de)
		switch kind {
		case fileTemp:
			get(name).tmp = true
		case fileRecord, fileBackup: // a backup copy stands for a lost record file
			get(name).record = true
		case fileLock:
			get(name).lock = true
		}
	}
	for _, name := range names {
		f := byName[name]
		if !strings.Contains(name, "@") || strings.HasPrefix(name, ".") || f.record && !f.tmp {
			continue
		}
		rm, err := sweepOne(nd, name)
		removed = append(removed, rm...)
		if err != nil {
			return removed, err
		}
	}
	rm, err := s.sweepProbes()
	return append(removed, rm...), err
}

// Kinds of files in a network's directory.
const (
	fileOther  = iota
	fileRecord // NAME.json
	fileBackup // NAME.json.bak
	fileLock   // NAME.lock
	fileTemp   // .NAME.json.tmp-* or .NAME.json.bak.tmp-*
)

// classify returns the kind of the file named n in a network's directory
// and the attachment NAME it belongs to (CONTAINERID@IFNAME, escaped). A
// NAME may hold ".json" itself: container IDs keep their dots.
func classify(n string) (name string, kind int) {
	if strings.HasPrefix(n, ".") {
		i := strings.LastIndex(n, tmpInfix)
		if i <= 0 {
			return "", fileOther
		}
		f := strings.TrimSuffix(n[1:i], backupSuffix)
		if name, ok := strings.CutSuffix(f, recordSuffix); ok && name != "" {
			return name, fileTemp
		}
		return "", fileOther
	}
	for _, c := range []struct {
		suffix string
		kind   int
	}{{recordSuffix, fileRecord}, {recordSuffix + backupSuffix, fileBackup}, {lockSuffix, fileLock}} {
		if name, ok := strings.CutSuffix(n, c.suffix); ok && name != "" {
			return name, c.kind
		}
	}
	return "", fileOther
}

// sweepOne removes the leftovers of one attachment under its lock, taken
// without waiting.
func sweepOne(nd *safefs.Dir, name string) ([]string, error) {
	lockName := name + lockSuffix
	lockPath := nd.Join(lockName)
	f, err := nd.OpenFile(lockName, unix.O_RDWR|unix.O_CREAT, fileMode)
	if err != nil {
		return nil, fmt.Errorf("sweep records: %w", err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return nil, nil // a call holds it
	} else if err != nil {
		return nil, fmt.Errorf("sweep records: lock %s: %w", lockPath, err)
	}
	if same, err := samePath(nd, f, lockName); err != nil || !same {
		return nil, err // removed meanwhile by its holder
	}
	des, err := nd.Names()
	if err != nil {
		return nil, fmt.Errorf("sweep records: %w", err)
	}
	var removed []string
	rm := func(n string) error {
		err := nd.Remove(n)
		if missing(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sweep records: %w", err)
		}
		removed = append(removed, nd.Join(n))
		return nil
	}
	for _, n := range des {
		if !strings.HasPrefix(n, "."+name+recordSuffix+tmpInfix) && !strings.HasPrefix(n, "."+name+recordSuffix+backupSuffix+tmpInfix) {
			continue
		}
		if st, err := nd.Lstat(n); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue // only what a write left: a regular file
		}
		if err := rm(n); err != nil {
			return removed, err
		}
	}
	// Without a record (neither its file nor its backup copy, which
	// stands for it: see load) nor an intent in it, the lock guards
	// nothing. It is removed while held (see Lock).
	for _, p := range []string{name + recordSuffix, name + recordSuffix + backupSuffix} {
		if _, err := nd.Lstat(p); !missing(err) {
			return removed, nil
		}
	}
	if holdsIntent(f) {
		return removed, nil // the record of a call that wrote none: GC releases it
	}
	if err := rm(lockName); err != nil {
		return removed, err
	}
	return removed, nil
}

// sweepProbes removes the probe files of an older STATUS (which wrote one
// to see that a record fits) that no call holds.
func (s *Store) sweepProbes() ([]string, error) {
	root, err := s.root(false)
	if err != nil {
		return nil, fmt.Errorf("sweep probes: %w", err)
	}
	defer root.Close()
	des, err := root.Names()
	if err != nil {
		return nil, fmt.Errorf("sweep probes: %w", err)
	}
	var removed []string
	for _, n := range des {
		if !strings.HasPrefix(n, probePrefix) {
			continue
		}
		f, err := root.OpenFile(n, unix.O_RDWR, 0)
		if err != nil {
			continue // gone meanwhile, or not ours to judge
		}
		if flock(f, unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := root.Remove(n); err == nil {
				removed = append(removed, root.Join(n))
			}
		}
		f.Close()
	}
	return removed, nil
}
