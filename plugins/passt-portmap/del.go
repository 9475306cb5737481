package main

import (
	"errors"
	"os"

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
	if rec != nil {
		if err := p.release(cfg, st, rec); err != nil {
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
	if rec.Managed && rec.Dir != "" {
		return stopManaged(cfg, rec.Dir)
	}
	if claimed := rec.Claimed(); len(claimed) > 0 && rec.Socket != "" {
		if err := p.removeRules(cfg, st, rec.Key(), rec.Socket, rec.PIDFile, claimed); err != nil {
			return err
		}
	}
	return nil
}

func stopManaged(cfg *Config, dir string) error {
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
