package attach

import (
	"context"
	"errors"
	"fmt"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Check verifies, changing nothing: every owned rule is in the
// forwarder's live tables and listening (a weak rule on at least one
// port); a managed forwarder runs, and a chained one's side interface,
// addresses, rules and routes are in the pod's namespace; the mappings ms
// are all owned. A failure is a *CheckError.
func (c *Core) Check(ctx context.Context, k Key, o Options, ms []Mapping) error {
	if err := o.resolve(); err != nil {
		return err
	}
	rec, err := c.loadRecord(&o, k.storeKey())
	if err != nil {
		return err
	}
	if rec == nil {
		if len(ms) == 0 && !o.Managed {
			return nil
		}
		return &CheckError{Socket: o.Socket, Reasons: []string{fmt.Sprintf("no ownership record for %s: ADD did not complete", k)}}
	}
	if rec.Managed {
		_, running, err := forwarder.Running(rec.Dir)
		if err != nil {
			return &CheckError{Socket: rec.Socket, Reasons: []string{fmt.Sprintf("managed forwarder in %s: %v", rec.Dir, err)}}
		}
		if !running {
			return &CheckError{Socket: rec.Socket, Reasons: []string{fmt.Sprintf("managed forwarder in %s is not running", rec.Dir)}}
		}
		if err := forwarder.CheckSocket(rec.Dir); err != nil {
			var ue *store.UnsafeError
			if errors.As(err, &ue) {
				return err
			}
			return &CheckError{Socket: rec.Socket, Reasons: []string{fmt.Sprintf("managed forwarder in %s: %v", rec.Dir, err)}}
		}
	}
	reasons, err := checkSide(rec, nil)
	if err != nil {
		return err
	}
	vctx, cancel := o.step(ctx)
	defer cancel()
	cl := c.client(&o, rec.Socket, rec.PIDFile)
	if len(rec.Rules) > 0 {
		// Rules in another forwarder than the one they were added to
		// are not this attachment's, byte-equal or not.
		cl.Reached = expect(rec, rec.Socket).check
	}
	v, err := cl.Verify(vctx, rec.Rules)
	var ns *notSameError
	if errors.As(err, &ns) {
		reasons := []string{ns.why}
		for _, r := range rec.Rules {
			reasons = append(reasons, "missing: "+r.String())
		}
		return &CheckError{Socket: rec.Socket, Reasons: reasons}
	}
	if err != nil {
		return atSocket(rec.Socket, err)
	}
	c.reportWarnings(rec.Socket, v.Warnings)
	for _, m := range v.Missing {
		reasons = append(reasons, "missing: "+m.String())
	}
	for _, f := range v.NotListening {
		reason := fmt.Sprintf("not listening: %s (host ports %s)", f.PifRule, wire.PortList(f.Ports))
		if f.BlockedBy != nil {
			// The forwarder binds no rule after the first that fails.
			reason += fmt.Sprintf(", blocked by the earlier rule %s, which does not listen", f.BlockedBy)
		}
		reasons = append(reasons, reason)
	}
	comp, err := newCompiler(ms, &o)
	if err != nil {
		return err
	}
	if rec.Side != nil {
		comp.chainedTargets(rec.Side.Addr4, rec.Side.Addr6)
	}
	reasons = append(reasons, unowned(comp, len(ms) > 0, rec.Rules, v.Tables)...)
	if len(reasons) > 0 {
		return &CheckError{Socket: rec.Socket, Reasons: reasons}
	}
	return nil
}

// unowned names mappings whose rules the attachment does not own (the
// configuration changed since ADD).
func unowned(comp *compiler, any bool, owned []wire.PifRule, live wire.Tables) []string {
	if !any {
		return nil
	}
	host := live.Lookup(wire.PifHost)
	if host == nil {
		return []string{"the forwarder has no " + wire.PifHost + " table"}
	}
	rules, err := comp.rules(host.Caps)
	if err != nil {
		return []string{"configured mappings: " + err.Error()}
	}
	var out []string
	for _, r := range wire.Minus(wire.RulesIn(wire.PifHost, rules), owned) {
		out = append(out, "configured but not set up: "+r.String())
	}
	return out
}
