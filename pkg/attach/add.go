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
	var side *sidenet.Side
	if m == modeChained {
		if err := checkChainedOptions(&o); err != nil {
			return nil, err
		}
		s, err := planSide(&o, k.Netns)
		if err != nil {
			return nil, err
		}
		side = &s
	}
	c.reapOrphans(ctx, &o, k.storeKey())
	comp, err := newCompiler(ms, &o)
	if err != nil {
		return nil, err
	}
	if side != nil {
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
	if !o.Managed {
		// A forwarder that others write to: ADDs of other processes
		// share its transactions (queue.go).
		return c.addQueued(ctx, k, o, ms)
	}
	j, err := c.openJob(ctx, k, o, comp, len(ms), side, true)
	if err != nil {
		return nil, err
	}
	defer j.lock.Drop() // a refused ADD that recorded nothing leaves no lock file
	if j.transacting() {
		c.runBatch(ctx, &o, j.fw.socket, j.fw.pidFile, []*job{j})
	}
	res, err := j.complete()
	if err != nil {
		return nil, err
	}
	if !o.NoNetwork && side == nil {
		if res.Network, err = forwarder.ReadNetwork(j.fw.cfg); err != nil {
			return nil, &forwarderError{Op: "read back the network of", Dir: j.fw.cfg.Dir, Err: err}
		}
	}
	return res, nil
}

// errLockBusy is openJob's error when it may not wait for the record
// lock and another call holds it.
var errLockBusy = errors.New("record lock held by another call")

// openJob starts an attachment's ADD of nmaps mappings, compiled by comp:
// its record lock (waiting for it when wait says so), its record, read
// and checked (lockRecord), what it claims, and its forwarder (a managed
// one is started or reused; side, when set, is a chained one's). On
// success the caller owns j.lock. Whether the claims count is judged
// in the transaction, by the forwarder it reaches (see runBatch).
func (c *Core) openJob(ctx context.Context, k Key, o Options, comp *compiler, nmaps int, side *sidenet.Side, wait bool) (*job, error) {
	st := recordStore(&o)
	lctx := ctx
	if !wait {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, 0)
		defer cancel()
	}
	lock, prev, err := c.lockRecord(lctx, &o, st, k.storeKey())
	if err != nil {
		var be *store.BusyError
		if !wait && errors.As(err, &be) {
			return nil, errLockBusy
		}
		return nil, err
	}
	fail := func(err error) (*job, error) {
		lock.Drop()
		return nil, err
	}
	if err := c.step("add: locked"); err != nil {
		return fail(err)
	}
	if lock.FromIntent() {
		// A call killed after its intent: make that intent the record
		// file before a new intent replaces it in the lock file.
		if err := lock.Write(prev); err != nil {
			return fail(err)
		}
	}
	var fw *fwd
	if side != nil {
		fw, prev, err = c.chainedForwarder(ctx, &o, k, lock, prev, *side)
	} else {
		fw, prev, err = c.forwarderFor(ctx, &o, k, lock, prev)
	}
	if err != nil {
		return fail(err)
	}
	owned, claimed := c.leaveOld(ctx, &o, prev, fw)
	return &job{core: c, k: k, o: o, comp: comp, nmaps: nmaps, lock: lock, prev: prev, fw: fw,
		owned: owned, claimed: claimed, next: fw.record(k, owned)}, nil
}

// complete stores the record the job's ADD leaves and returns its result.
func (j *job) complete() (*Result, error) {
	if j.err != nil {
		return nil, j.err
	}
	if j.transacting() {
		if err := j.core.step("add: applied"); err != nil {
			return nil, err
		}
	}
	if err := j.finish(); err != nil {
		return nil, err
	}
	if err := j.core.step("add: recorded"); err != nil {
		return nil, err
	}
	return &Result{Socket: j.fw.socket, PIDFile: j.fw.pidFile, Rules: j.next.Rules}, nil
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
		if err := c.leaveManaged(ctx, o, rec); err != nil {
			return nil, nil, err
		}
	}
	// An interface this attachment's own forwarder made in this namespace
	// (one that just died leaves it for a moment) is not another network.
	ours := rec != nil && rec.Managed && rec.Dir == dir && rec.Netns == k.Netns
	if err := checkChained(o, f.cfg, ours); err != nil {
		return nil, nil, err
	}
	if rec == nil || !rec.Managed || rec.Dir != dir {
		var err error
		if rec, err = c.recordOwn(ctx, o, k, lock, rec, f); err != nil {
			return nil, nil, err
		}
	}
	inst, err := c.ensureOwn(ctx, o, f)
	if err != nil {
		return nil, nil, err
	}
	f.socket, f.pidFile = inst.Socket, inst.PIDFile
	return f, rec, nil
}

// recordOwn writes the record of an attachment about to start its own
// forwarder f, in place of old, whose rules at another forwarder are
// removed first. It is written before the forwarder starts so that DEL
// and GC find the forwarder even when the ADD goes no further. Not
// synced: a machine crash stops the forwarder (and empties a chained
// pod's namespace) too, and the ADD's last write is.
func (c *Core) recordOwn(ctx context.Context, o *Options, k Key, lock *store.Locked, old *store.Record, f *fwd) (*store.Record, error) {
	if old != nil && len(old.Rules) > 0 && old.Socket != "" {
		if err := c.release(ctx, o, old); err != nil {
			c.warnf("could not remove the rules this attachment owned at %s: %v", old.Socket, err)
		}
	}
	paths := forwarder.Paths(f.cfg.Dir)
	f.socket, f.pidFile = paths.Socket, paths.PIDFile
	rec := f.record(k, nil)
	if err := lock.WriteUnsynced(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// ensureOwn starts the attachment's own forwarder f, or finds it running,
// within one step of the ADD's time.
func (c *Core) ensureOwn(ctx context.Context, o *Options, f *fwd) (*forwarder.Instance, error) {
	sctx, cancel := o.step(ctx)
	defer cancel()
	inst, err := forwarder.Ensure(sctx, f.cfg)
	if err != nil {
		return nil, forwarderFailure("start", f.cfg.Dir, err)
	}
	return inst, nil
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
// started nothing, and no write at all when what is on disk says it
// already (written beside the send, or a repeated ADD).
func (j *job) finish() error {
	lock, next := j.lock, j.next
	switch {
	case len(next.Rules) == 0 && !next.Managed:
		return lock.Remove()
	case j.written != nil && sameRecord(j.written, next):
		return nil
	case j.written == nil && sameRecord(j.prev, next) && lock.Damaged() == nil:
		return nil // a repeated ADD: nothing to write (and no fsync to wait for)
	}
	return lock.Write(next)
}

// sameRecord reports whether b would store what a holds, but for the time
// and the intent number.
func sameRecord(a, b *store.Record) bool {
	if a == nil || b == nil {
		return false
	}
	x, y := *a, *b
	x.Updated, y.Updated = time.Time{}, time.Time{}
	x.Version, y.Version = store.FormatVersion, store.FormatVersion
	x.Intent, y.Intent = 0, 0 // a write supersedes the intents anyway
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
