package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// GC is CNI GC: release every attachment of this network that the
// runtime no longer lists in cni.dev/valid-attachments, as DEL would.
// Attachments of other networks are not looked at.
func (p *Plugin) GC(args *skel.CmdArgs) error { return cniErr(p.gc(args)) }

func (p *Plugin) gc(args *skel.CmdArgs) error {
	cfg, err := ParseConfig(args.StdinData, envOf(args))
	if err != nil {
		return err
	}
	if !cfg.HasValidAttachments {
		// Without the list every attachment would look stale.
		return cfgErr("cni.dev/valid-attachments", "missing: GC needs the list of valid attachments (it may be empty)")
	}
	valid := map[[2]string]bool{}
	for _, a := range cfg.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	if err := store.CheckDir(cfg.DataDir); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing was ever recorded
	} else if err != nil {
		return err
	}
	st := recordStore(cfg)
	entries, err := st.List(cfg.Network)
	if err != nil {
		return err
	}
	var failed []error
	for _, e := range entries {
		if valid[[2]string{e.Key.ContainerID, e.Key.IfName}] {
			continue
		}
		if err := p.collect(cfg, st, e.Key); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", e.Key, err))
		}
	}
	// What killed calls left: lock files of attachments without a record,
	// temporary files of unfinished writes. Sweep takes each attachment's
	// lock without waiting and leaves what a call holds.
	if _, err := st.Sweep(cfg.Network); err != nil {
		failed = append(failed, err)
	}
	if len(failed) == 0 {
		return nil
	}
	// Report the first failure's code, with every failure in the details.
	first := cniErr(failed[0]).(*types.Error)
	var msgs []string
	for _, err := range failed {
		msgs = append(msgs, cniErr(err).Error())
	}
	return types.NewError(first.Code, fmt.Sprintf("GC could not release %d stale attachment(s)", len(failed)), strings.Join(msgs, " | "))
}

// collect releases one stale attachment under its lock.
func (p *Plugin) collect(cfg *Config, st *store.Store, key store.Key) error {
	ctx, cancel := cfg.context()
	lock, err := st.Lock(ctx, key)
	cancel()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	rec, err := lock.Read()
	if err != nil {
		// Unreadable, and so is its backup copy: what it owns is unknown.
		// It stays, reported, rather than orphan its rules.
		return err
	}
	p.warnDamaged(lock.Damaged())
	if rec != nil {
		if err := p.release(cfg, st, rec); err != nil {
			return err
		}
	}
	return lock.Remove()
}
