package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// Del is CNI DEL: remove exactly what this attachment owns, then its
// record. Whatever is already gone (forwarder, socket, record, rules)
// counts as removed.
func (p *Plugin) Del(args *skel.CmdArgs) error { return cniErr(p.del(args)) }

func (p *Plugin) del(args *skel.CmdArgs) error {
	env := envOf(args)
	cfg, err := ParseConfig(args.StdinData, env)
	if err != nil {
		return err
	}
	if err := ensureDataDir(cfg); err != nil {
		return err
	}
	st := recordStore(cfg)
	key := keyOf(cfg, args)
	ctx, cancel := cfg.context()
	lock, err := st.Lock(ctx, key)
	cancel()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	rec, err := lock.Read()
	if err != nil {
		// What the attachment owned is unknown: removing nothing would
		// orphan its rules, removing what the mappings name could take
		// another client's. The error says what to do.
		return err
	}
	p.warnDamaged(lock.Damaged())
	if err := p.step("del: locked"); err != nil {
		return err
	}
	if rec != nil {
		if err := p.release(cfg, st, rec); err != nil {
			return err
		}
		if err := p.step("del: released"); err != nil {
			return err
		}
		return lock.Remove()
	}

	// No record: this attachment has sent nothing. ADD writes its intent
	// (the pending rules) before it sends anything, so an attachment
	// without a record never added a rule; a rule in the table that
	// matches its mappings is another client's (pesto's, another
	// network's attachment's) and stays.
	if cfg.Managed {
		// The forwarder directory of this key under our own dataDir can
		// only have been made by an ADD of this attachment.
		if err := stopManaged(cfg, forwarderDir(cfg.DataDir, key)); err != nil {
			return err
		}
	} else if len(cfg.Mappings) > 0 {
		p.warnf("no ownership record for %s: it added nothing, so no rule was removed (the %d configured mapping(s) were not looked up in the forwarder: a rule matching them is another client's)", key, len(cfg.Mappings))
	}
	return lock.Remove()
}

// release removes a recorded attachment's rules, or stops its managed
// forwarder, which serves this attachment alone and takes its rules with
// it.
func (p *Plugin) release(cfg *Config, st *store.Store, rec *store.Record) error {
	if rec.Managed {
		if err := checkManagedDir(cfg, rec); err != nil {
			return err
		}
		return stopManaged(cfg, rec.Dir)
	}
	if claimed := rec.Claimed(); len(claimed) > 0 && rec.Socket != "" {
		if now := forwarderID(rec.Socket); restarted(rec, now) {
			p.warnf("the forwarder at %s was restarted since this attachment's rules were added (control socket inode %d, now %d): they went with it; byte-equal rules there now are another client's and stay", rec.Socket, rec.ForwarderID, now)
			return nil
		}
		if err := p.removeRules(cfg, st, rec.Key(), rec.Socket, rec.PIDFile, claimed); err != nil {
			return err
		}
	}
	return nil
}

// stopManaged stops the managed forwarder in dir, an attachment's
// directory under dataDir/forwarders, and removes the directory. A
// directory that is not a real one of ours (a symbolic link, or in a
// forwarders directory others could write to) is left alone.
func stopManaged(cfg *Config, dir string) error {
	if err := store.CheckDir(filepath.Dir(dir)); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return &forwarderError{Op: "inspect the directory of", Dir: dir, Err: err}
	} else if !fi.IsDir() {
		return &store.UnsafeError{Path: dir, What: "is not a directory (a managed forwarder's directory is one)"}
	}
	ctx, cancel := cfg.context()
	defer cancel()
	if err := forwarder.Stop(ctx, dir); err != nil {
		return &forwarderError{Op: "stop", Dir: dir, Err: err}
	}
	if err := os.RemoveAll(dir); err != nil {
		return &forwarderError{Op: "remove the directory of", Dir: dir, Err: err}
	}
	return nil
}

// warnDamaged reports a record file that was read from its backup copy.
func (p *Plugin) warnDamaged(damaged error) {
	if damaged != nil {
		var ce *store.CorruptError
		if errors.As(damaged, &ce) && ce.Backup != "" {
			p.warnf("%v; using its backup copy %s, the next write repairs it", damaged, ce.Backup)
			return
		}
		p.warnf("%v", damaged)
	}
}

// checkManagedDir refuses a record of a managed forwarder whose directory
// is not the one this plugin makes for its key under dataDir: the
// directory is stopped and removed by DEL and GC, so a record must never
// be able to name another.
func checkManagedDir(cfg *Config, rec *store.Record) error {
	if want := forwarderDir(cfg.DataDir, rec.Key()); rec.Dir != want {
		return &recordDirError{Dir: rec.Dir, Want: want, Key: rec.Key()}
	}
	return nil
}

// recordDirError is a record naming a managed forwarder directory that is
// not its attachment's.
type recordDirError struct {
	Dir, Want string
	Key       store.Key
}

func (e *recordDirError) Error() string {
	return fmt.Sprintf("the record of %s names the managed forwarder directory %q, not this attachment's %s; nothing was stopped or removed: stop that forwarder by hand if it is one, then remove the record", e.Key, e.Dir, e.Want)
}

// ensureDataDir creates dataDir when missing and checks it (see
// store.CheckDir): a real directory of root or this user that others
// cannot write to.
func ensureDataDir(cfg *Config) error { return store.EnsureDir(cfg.DataDir) }
