package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// Check is CNI CHECK: every owned rule is in the forwarder's live tables
// and listening (a weak rule on one port at least); a managed forwarder
// runs; the configured mappings are all owned. It changes nothing.
func (p *Plugin) Check(args *skel.CmdArgs) error { return cniErr(p.check(args)) }

func (p *Plugin) check(args *skel.CmdArgs) error {
	env := envOf(args)
	cfg, err := ParseConfig(args.StdinData, env)
	if err != nil {
		return err
	}
	key := keyOf(cfg, args)
	rec, damaged, err := recordStore(cfg).Load(key)
	p.warnDamaged(damaged)
	if errors.Is(err, fs.ErrNotExist) {
		rec, err = nil, nil
	}
	if err != nil {
		return err
	}
	if rec == nil {
		if len(cfg.Mappings) == 0 && !cfg.Managed {
			return nil
		}
		socket := cfg.Socket
		if !cfg.Managed {
			socket, _, _ = resolveSocket(cfg, env)
		}
		return &checkError{Socket: socket, Reasons: []string{fmt.Sprintf("no ownership record for %s: ADD did not complete", key)}}
	}
	if rec.Managed {
		if err := checkManagedDir(cfg, rec); err != nil {
			return err
		}
		_, running, err := forwarder.Running(rec.Dir)
		if err != nil {
			return &checkError{Socket: rec.Socket, Reasons: []string{fmt.Sprintf("managed forwarder in %s: %v", rec.Dir, err)}}
		}
		if !running {
			return &checkError{Socket: rec.Socket, Reasons: []string{fmt.Sprintf("managed forwarder in %s is not running", rec.Dir)}}
		}
	}
	want := make([]ctlclient.PifRule, 0, len(rec.Rules))
	for _, o := range rec.Rules {
		want = append(want, ctlclient.PifRule{Pif: o.Pif, Rule: o.Rule})
	}
	ctx, cancel := cfg.context()
	defer cancel()
	v, err := p.client(rec.Socket, rec.PIDFile).Verify(ctx, want)
	if err != nil {
		return atSocket(rec.Socket, err)
	}
	p.reportWarnings(rec.Socket, v.Warnings)
	var reasons []string
	for _, m := range v.Missing {
		reasons = append(reasons, "missing: "+ruleText(m.Pif, m.Rule))
	}
	for _, f := range v.NotListening {
		reason := fmt.Sprintf("not listening: %s (host ports %s)", ruleText(f.Pif, f.Rule), portList(f.Ports))
		if f.BlockedBy != nil {
			// The forwarder binds no rule after the first that fails.
			reason += fmt.Sprintf(", blocked by the earlier rule %s, which does not listen", f.BlockedBy)
		}
		reasons = append(reasons, reason)
	}
	reasons = append(reasons, unowned(cfg, rec.Rules, v.Tables)...)
	if len(reasons) > 0 {
		return &checkError{Socket: rec.Socket, Reasons: reasons}
	}
	return nil
}

// unowned names configured mappings whose rules the attachment does not
// own (the configuration changed since ADD).
func unowned(cfg *Config, owned []store.OwnedRule, live wire.Tables) []string {
	if len(cfg.Mappings) == 0 {
		return nil
	}
	host := live.Lookup(wire.PifHost)
	if host == nil {
		return []string{"the forwarder has no " + wire.PifHost + " table"}
	}
	rules, err := translate.Rules(cfg.Mappings, cfg.Options, host.Caps)
	if err != nil {
		return []string{"configured mappings: " + err.Error()}
	}
	have := map[[wire.RuleSize]byte]bool{}
	for _, o := range owned {
		if o.Pif == wire.PifHost {
			have[o.Rule.Key()] = true
		}
	}
	var out []string
	for _, r := range rules {
		if !have[r.Key()] {
			out = append(out, "configured but not set up: "+ruleText(wire.PifHost, r))
		}
	}
	return out
}
