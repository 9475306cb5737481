package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/sidenet"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// allCaps lets the mappings be checked before any forwarder is asked:
// what fails with every capability is a bad mapping.
const allCaps = wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP | wire.CapScan | wire.CapIfName

// Add makes the forwarder hold exactly this attachment's mappings, in one
// transaction, and records them as owned. A managed forwarder is started
// (or reused) first. It is idempotent: a repeated Add asks for what is
// there and changes nothing.
func (c *Core) Add(ctx context.Context, k Key, o Options, ms []Mapping) (*Result, error) {
	if err := o.resolve(); err != nil {
		return nil, err
	}
	res, err := c.add(ctx, k, o, ms)
	return res, explainHolders(err)
}

func (c *Core) add(ctx context.Context, k Key, o Options, ms []Mapping) (*Result, error) {
	m, err := modeOf(&o)
	if err != nil {
		return nil, err
	}
	var side sidenet.Side
	if m == modeChained {
		if err := checkChainedOptions(&o); err != nil {
			return nil, err
		}
		if side, err = planSide(&o, k.Netns); err != nil {
			return nil, err
		}
	}
	c.reapOrphans(ctx, &o, k.storeKey())
	comp, err := newCompiler(ms, &o)
	if err != nil {
		return nil, err
	}
	if m == modeChained {
		comp.chainedTargets(side.Addr4, side.Addr6)
	}
	// Bad mappings fail here, before any lock or socket: what fails with
	// every capability is the mapping's fault, not the forwarder's.
	if _, err := comp.rules(allCaps); err != nil {
		var me *translate.MappingError
		if errors.As(err, &me) {
			return nil, familyNote(err, side)
		}
	}
	if err := checkPaths(&o, k); err != nil {
		return nil, err
	}
	st := recordStore(&o)
	lock, prev, err := c.lockRecord(ctx, &o, st, k.storeKey())
	if err != nil {
		return nil, err
	}
	defer lock.Drop() // a refused ADD that recorded nothing leaves no lock file
	if err := c.step("add: locked"); err != nil {
		return nil, err
	}

	var fw *fwd
	if m == modeChained {
		fw, prev, err = c.chainedForwarder(ctx, &o, k, lock, prev, side)
	} else {
		fw, prev, err = c.forwarderFor(ctx, &o, k, lock, prev)
	}
	if err != nil {
		return nil, err
	}
	owned, claimed := c.leaveOld(ctx, &o, prev, fw)

	next := fw.record(k, owned)
	if len(ms) > 0 || len(claimed) > 0 {
		// The claimed rules count only in the forwarder they went to
		// (see sameForwarder): the transaction's first connection
		// checks that, and a forwarder restarted since gets a
		// transaction of its own that claims none.
		g := &guard{socket: fw.socket}
		if len(claimed) > 0 {
			g = expect(prev, fw.socket)
		}
		rules, err := c.apply(ctx, &o, lock, comp, next, g, prev == nil, claimed)
		var ns *notSameError
		if errors.As(err, &ns) {
			c.warnf("%s; a byte-equal rule there now is another client's", ns.why)
			next = fw.record(k, nil)
			g = &guard{socket: fw.socket}
			rules, err = c.apply(ctx, &o, lock, comp, next, g, prev == nil, nil)
		}
		if err != nil {
			return nil, err
		}
		next.Rules, next.Identity = rules, storeIdentity(g.reached)
		if err := c.step("add: applied"); err != nil {
			return nil, err
		}
	}
	if err := finish(lock, prev, next); err != nil {
		return nil, err
	}
	if err := c.step("add: recorded"); err != nil {
		return nil, err
	}
	res := &Result{Socket: fw.socket, PIDFile: fw.pidFile, Rules: next.Rules}
	if o.Managed && !o.NoNetwork && m != modeChained {
		if res.Network, err = forwarder.ReadNetwork(fw.cfg); err != nil {
			return nil, &forwarderError{Op: "read back the network of", Dir: fw.cfg.Dir, Err: err}
		}
	}
	return res, nil
}

// checkPaths refuses, before anything is recorded, paths that cannot
// work: a managed forwarder's pasta that is not there, or a socket under
// a data directory too long for a UNIX socket address; then it makes the
// data directory (see store.EnsureDir).
func checkPaths(o *Options, k Key) error {
	if o.Managed {
		if err := findPasta(o.Pasta); err != nil {
			return err
		}
		if s := forwarder.Paths(forwarderDir(o.DataDir, k.storeKey())).Socket; len(s) > forwarder.MaxSocketPath {
			return &ConfigError{Setting: SettingDataDir, Err: fmt.Errorf("%q is too long: the managed forwarder's socket %s would be %d bytes, a UNIX socket address holds at most %d", o.DataDir, s, len(s), forwarder.MaxSocketPath)}
		}
	}
	return store.EnsureDir(o.DataDir)
}

// findPasta refuses a managed configuration whose pasta binary is not
// there: the configuration names a program this host lacks, so it is a
// bad configuration naming the key, found before anything is recorded or
// started. Status says the same as not ready.
func findPasta(pasta string) error {
	name := pasta
	if name == "" {
		name = forwarder.DefaultPasta
	}
	_, err := exec.LookPath(name)
	if err == nil {
		return nil
	}
	if pasta == "" {
		return &ConfigError{Setting: SettingPasta, Err: fmt.Errorf("not set, and no %q in PATH (%s): %v; set it to the path of a pasta with a control socket (--conf-path)", name, os.Getenv("PATH"), err)}
	}
	return &ConfigError{Setting: SettingPasta, Err: fmt.Errorf("%q cannot be run: %v; set it to the path of a pasta with a control socket (--conf-path)", name, err)}
}

// fwd is the forwarder an attachment uses in this call.
type fwd struct {
	socket, pidFile string
	managed         bool
	cfg             forwarder.Config // managed only
	side            *store.Side      // chained only
}

// record is a record of the attachment at f owning rules.
func (f *fwd) record(k Key, rules []wire.PifRule) *store.Record {
	r := &store.Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Netns: k.Netns,
		Socket: f.socket, PIDFile: f.pidFile, Managed: f.managed, Side: f.side, Rules: rules}
	if f.managed {
		r.Dir = f.cfg.Dir
	}
	return r
}

// forwarderFor returns the forwarder of this ADD: the managed one,
// started or reused, or the configured socket. A managed forwarder is
// recorded before it starts, so that DEL and GC find it even when this
// ADD goes no further; the record it replaces (whose rules at another
// forwarder are removed first) is returned in rec's place.
func (c *Core) forwarderFor(ctx context.Context, o *Options, k Key, lock *store.Locked, rec *store.Record) (*fwd, *store.Record, error) {
	if !o.Managed {
		return &fwd{socket: o.Socket, pidFile: o.PIDFile}, rec, nil
	}
	dir := forwarderDir(o.DataDir, k.storeKey())
	if err := ensureForwarders(o); err != nil {
		return nil, nil, err
	}
	f := &fwd{managed: true, cfg: forwarder.Config{Pasta: o.Pasta, Args: o.PastaArgs, NetNS: k.Netns, IfName: k.IfName, Dir: dir, Timeout: o.timeout(),
		MapHostLoopback: o.MapHostLoopback, LoopbackToHost: o.LoopbackToHost}}
	if rec != nil && rec.Side != nil {
		// Chained before: its forwarder runs another mode, and its side
		// is in the namespace.
		if err := c.releaseManaged(ctx, o, rec); err != nil {
			return nil, nil, err
		}
		rec.Managed, rec.Side, rec.Rules, rec.Pending = false, nil, nil, nil
	}
	// An interface this attachment's own forwarder made in this namespace
	// (one that just died leaves it for a moment) is not another network.
	ours := rec != nil && rec.Managed && rec.Dir == dir && rec.Netns == k.Netns
	if err := checkChained(o, f.cfg, ours); err != nil {
		return nil, nil, err
	}
	if rec == nil || !rec.Managed || rec.Dir != dir {
		if rec != nil && len(rec.Rules) > 0 && rec.Socket != "" {
			if err := c.release(ctx, o, rec); err != nil {
				c.warnf("could not remove the rules this attachment owned at %s: %v", rec.Socket, err)
			}
		}
		paths := forwarder.Paths(dir)
		f.socket, f.pidFile = paths.Socket, paths.PIDFile
		rec = f.record(k, nil)
		if err := lock.Write(rec); err != nil {
			return nil, nil, err
		}
	}
	sctx, cancel := o.step(ctx)
	inst, err := forwarder.Ensure(sctx, f.cfg)
	cancel()
	if err != nil {
		return nil, nil, &forwarderError{Op: "start", Dir: dir, Err: err}
	}
	f.socket, f.pidFile = inst.Socket, inst.PIDFile
	return f, rec, nil
}

// leaveOld lets go of what the previous record holds elsewhere: rules at
// another forwarder, a managed forwarder no longer used. It returns the
// rules the attachment owns and claims at f (which count only if f's
// forwarder is the one they went to: see Add).
func (c *Core) leaveOld(ctx context.Context, o *Options, rec *store.Record, f *fwd) (owned, claimed []wire.PifRule) {
	if rec == nil {
		return nil, nil
	}
	owned, claimed = rec.Rules, rec.Claimed()
	if rec.Socket != f.socket && len(claimed) > 0 {
		if err := c.release(ctx, o, rec); err != nil {
			c.warnf("could not remove the rules this attachment owned at %s: %v", rec.Socket, err)
		}
		owned, claimed = nil, nil
	}
	if rec.Managed && !f.managed {
		// Told to use another forwarder: the one started before for this
		// attachment has no use left.
		if err := stopManaged(ctx, o, rec.Dir); err != nil {
			c.warnf("%v", err)
		}
	}
	return owned, claimed
}

// apply runs the transaction of an ADD, writing ahead the rules it adds,
// and returns the rules owned afterwards. next is the record to write
// should the forwarder's state become unknown; fresh says there was no
// record before.
func (c *Core) apply(ctx context.Context, o *Options, lock *store.Locked, comp *compiler, next *store.Record, g *guard, fresh bool, claimed []wire.PifRule) ([]wire.PifRule, error) {
	before := *next
	before.Pending = wire.Minus(claimed, next.Rules)
	wroteIntent := false
	// Write-ahead: record the rules this ADD adds before sending them, so
	// that if it dies after the forwarder took them, the next ADD (or
	// DEL) knows them for this attachment's. Called inside the
	// transaction, with rules all absent from the live table: while the
	// connection is held no other client can add them, so a pending rule
	// found later was this ADD's, unless another client added it after
	// this run died.
	intent := func(adding []wire.PifRule) error {
		extra := wire.Minus(adding, claimed)
		if len(extra) == 0 {
			return nil
		}
		ahead := before
		ahead.Pending = append(append([]wire.PifRule(nil), before.Pending...), extra...)
		// The intent is written inside the transaction: the forwarder
		// it goes to is the one the first connection reached.
		ahead.Identity = storeIdentity(g.reached)
		if err := lock.WriteIntent(&ahead); err != nil {
			return err
		}
		wroteIntent = true
		return c.step("add: intent written")
	}
	desired, err := c.transact(ctx, o, next.Socket, next.PIDFile, g, comp, claimed, intent)
	if err == nil {
		return desired, nil
	}
	switch {
	case unknownState(err) != nil:
		// A rollback that failed leaves this update's rules in unknown
		// places: keep owning them so DEL removes them.
		next.Rules = wire.Union(claimed, unknownState(err))
		next.Identity = storeIdentity(g.reached)
		if werr := lock.Write(next); werr != nil {
			c.warnf("%v", werr)
		}
	case (wroteIntent || fresh) && nothingChanged(err):
		// The intent did not happen: record what was before it, even
		// when that is nothing. The DEL that a runtime sends after a
		// failed ADD then goes by a record that owns nothing, rather than
		// by the mappings, which may match a rule that another client
		// holds (the likely reason for the failure).
		before.Identity = storeIdentity(g.reached)
		if werr := lock.Write(&before); werr != nil {
			c.warnf("%v", werr)
		}
	}
	return nil, err
}

// transact runs the one transaction of an ADD: the mappings compiled for
// the live host table, the edits decided by the ownership policy, the
// rules it adds written ahead by intent before anything is sent.
func (c *Core) transact(ctx context.Context, o *Options, socket, pidFile string, g *guard, comp *compiler, claimed []wire.PifRule, intent func([]wire.PifRule) error) ([]wire.PifRule, error) {
	var (
		desired []wire.PifRule
		rules   translate.Compiled
	)
	plan := func(live wire.Tables) ([]wire.Edit, error) {
		host := live.Lookup(wire.PifHost)
		if host != nil {
			var err error
			if rules, err = comp.compile(host.Caps); err != nil {
				return nil, err
			}
		}
		edits, err := planEdits(live, claimed, rules.Rules)
		if err != nil {
			return nil, comp.attribute(rules.Attribute(err))
		}
		var adding []wire.PifRule
		for _, r := range edits[0].Add {
			if !host.Contains(r) {
				adding = append(adding, wire.PifRule{Pif: wire.PifHost, Rule: r})
			}
		}
		if err := intent(adding); err != nil {
			return nil, err
		}
		desired = wire.RulesIn(wire.PifHost, rules.Rules)
		return edits, nil
	}
	err := c.update(ctx, o, socket, pidFile, g, plan)
	if err == nil {
		return desired, nil
	}
	var se *ctlclient.StatusError
	if errors.As(err, &se) && se.Result != nil && se.Result.Status == ctlclient.StatusSafeFail {
		// The forwarder does not say which rule it refused: name the
		// mappings behind each rule of the update.
		var from []ruleFrom
		for _, r := range rules.Rules {
			if idx := comp.mappings(rules.Entries(r)); len(idx) > 0 {
				from = append(from, ruleFrom{Rule: wire.PifRule{Pif: wire.PifHost, Rule: r}, Entries: idx})
			}
		}
		if len(from) > 0 {
			err = &annotated{Err: err, From: from}
		}
	}
	return nil, atSocket(socket, err)
}

// unknownState returns the rules an update may have left in the tables
// when their state is unknown (rollback failed, or only partly in
// effect), and nil otherwise.
func unknownState(err error) []wire.PifRule {
	var (
		se *ctlclient.StatusError
		me *ctlclient.MixedError
	)
	switch {
	case errors.As(err, &se) && se.Result != nil && se.Result.Status == ctlclient.StatusRollbackFail:
		return nonNil(se.Result.Added)
	case errors.As(err, &me) && me.Result != nil:
		return nonNil(me.Result.Added)
	}
	return nil
}

func nonNil(rs []wire.PifRule) []wire.PifRule {
	if rs == nil {
		return []wire.PifRule{}
	}
	return rs
}

// nothingChanged reports whether err means that the forwarder's tables
// were left as they were: refused before sending (bad mappings, a table
// that cannot take them), refused by the forwarder, or rolled back.
func nothingChanged(err error) bool {
	var (
		me *translate.MappingError
		te *translate.TableError
		se *ctlclient.StatusError
	)
	switch {
	case errors.As(err, &me), errors.As(err, &te):
		return true
	case errors.As(err, &se) && se.Result != nil:
		return se.Result.Status == ctlclient.StatusSafeFail || se.Result.Status == ctlclient.StatusSocketFail
	}
	return false
}

// finish stores the record an ADD leaves: none when it owns nothing and
// started nothing, and no write at all when nothing changed.
func finish(lock *store.Locked, prev, next *store.Record) error {
	switch {
	case len(next.Rules) == 0 && !next.Managed:
		return lock.Remove()
	case sameRecord(prev, next) && lock.Damaged() == nil:
		return nil // a repeated ADD: nothing to write (and no fsync to wait for)
	}
	return lock.Write(next)
}

// sameRecord reports whether b would store what a holds, but for the time.
func sameRecord(a, b *store.Record) bool {
	if a == nil || b == nil {
		return false
	}
	x, y := *a, *b
	x.Updated, y.Updated = time.Time{}, time.Time{}
	x.Version, y.Version = store.FormatVersion, store.FormatVersion
	ea, err1 := store.Encode(&x)
	eb, err2 := store.Encode(&y)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// entryNames renders mapping indexes as "entry 3" or "entries 0, 2-4".
func entryNames(idx []int) string {
	if len(idx) == 1 {
		return fmt.Sprintf("entry %d", idx[0])
	}
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(idx[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", idx[i], idx[j]))
		}
		i = j + 1
	}
	return "entries " + strings.Join(parts, ", ")
}
