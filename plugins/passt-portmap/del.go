package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
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
		p.warnf("%v; removing what the configuration names instead", err)
		rec = nil
	}
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

	// No record: ADD never completed, or ran before the store existed.
	if cfg.Managed {
		if err := stopManaged(cfg, forwarderDir(cfg.DataDir, key)); err != nil {
			return err
		}
	} else if len(cfg.Mappings) > 0 {
		socket, pidFile, err := resolveSocket(cfg, env)
		var mee *MissingEnvError
		if errors.As(err, &mee) {
			p.warnf("no record and %v: nothing to remove", err)
		} else if err != nil {
			return err
		} else if err := p.removeMapped(cfg, st, key, socket, pidFile); err != nil {
			return err
		}
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

// removeMapped removes the rules the configured mappings translate to,
// where present byte for byte and owned by no other record.
func (p *Plugin) removeMapped(cfg *Config, st *store.Store, key store.Key, socket, pidFile string) error {
	if forwarderGone(socket) {
		return nil
	}
	shared := sharedRules(st, key, socket)
	plan := func(live wire.Tables) ([]wire.Edit, error) {
		host := live.Lookup(wire.PifHost)
		if host == nil {
			return nil, nil
		}
		// The rules ADD made from these mappings: all of them compacted
		// together, or, when ADD saw other mappings, each on its own.
		// Mappings the forwarder could not take were never added.
		cands, _ := translate.Rules(cfg.Mappings, cfg.Options, host.Caps)
		for _, m := range cfg.Mappings {
			if rs, err := translate.Rules([]translate.PortMapping{m}, cfg.Options, host.Caps); err == nil {
				cands = append(cands, rs...)
			}
		}
		var rm []wire.Rule
		seen := map[[wire.RuleSize]byte]bool{}
		for _, r := range cands {
			if k := r.Key(); host.Contains(r) && !shared[k] && !seen[k] {
				seen[k] = true
				rm = append(rm, r)
			}
		}
		if len(rm) == 0 {
			return nil, nil
		}
		return []wire.Edit{{Pif: wire.PifHost, Remove: rm}}, nil
	}
	err := p.update(cfg, socket, pidFile, plan)
	if gone(err) {
		return nil
	}
	if err != nil {
		return atSocket(socket, fmt.Errorf("remove the configured mappings: %w", err))
	}
	return nil
}
