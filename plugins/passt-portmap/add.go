package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// allCaps lets Rules check the mappings themselves before any forwarder
// is asked: what fails with every capability is a bad mapping.
const allCaps = wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP | wire.CapScan | wire.CapIfName

// Add is CNI ADD: make the forwarder hold exactly this attachment's
// mappings, in one transaction, and record them as owned.
func (p *Plugin) Add(args *skel.CmdArgs) error { return cniErr(explainHolders(p.add(args))) }

func (p *Plugin) add(args *skel.CmdArgs) error {
	env := envOf(args)
	cfg, err := ParseConfig(args.StdinData, env)
	if err != nil {
		return err
	}
	if err := p.beforeAdd(cfg, args); err != nil {
		return err
	}
	// Bad mappings fail here, before any lock or socket: what fails with
	// every capability is the mapping's fault, not the forwarder's.
	if _, err := translate.Rules(cfg.Mappings, cfg.Options, allCaps); err != nil {
		var me *translate.MappingError
		if errors.As(err, &me) {
			return err
		}
	}
	key := keyOf(cfg, args)
	// Paths that cannot work are configuration errors, found before
	// anything is recorded.
	if cfg.Managed {
		if err := findPasta(cfg); err != nil {
			return err
		}
		if s := forwarder.Paths(forwarderDir(cfg.DataDir, key)).Socket; len(s) > MaxSocketPath {
			return cfgErr("dataDir", "%q is too long: the managed forwarder's socket %s would be %d bytes, a UNIX socket address holds at most %d", cfg.DataDir, s, len(s), MaxSocketPath)
		}
	} else if _, _, err := resolveSocket(cfg, env); err != nil {
		return err
	}
	if err := ensureDataDir(cfg); err != nil {
		return err
	}
	st := recordStore(cfg)
	lctx, lcancel := cfg.context()
	lock, err := st.Lock(lctx, key)
	lcancel()
	if err != nil {
		return err
	}
	defer lock.Drop() // a refused ADD that recorded nothing leaves no lock file
	rec, err := lock.Read()
	if err != nil {
		// Replacing a record that cannot be read would disown the rules
		// it names: they would stay in the forwarder with no owner.
		return err
	}
	p.warnDamaged(lock.Damaged())
	if rec != nil && rec.Managed {
		if err := checkManagedDir(cfg, rec); err != nil {
			return err
		}
	}
	if err := p.step("add: locked"); err != nil {
		return err
	}

	var (
		socket, pidFile string
		fcfg            forwarder.Config
	)
	if cfg.Managed {
		dir := forwarderDir(cfg.DataDir, key)
		if err := store.EnsureDir(filepath.Dir(dir)); err != nil {
			return err
		}
		fcfg = forwarder.Config{Pasta: cfg.Pasta, Args: cfg.PastaArgs, NetNS: args.Netns, IfName: args.IfName, Dir: dir, Timeout: cfg.Timeout,
			MapHostLoopback: cfg.MapHostLoopback, LoopbackToHost: cfg.LoopbackToHost}
		// An interface this attachment's own forwarder made in this
		// namespace (one that just died leaves it for a moment) is not
		// another network.
		ours := rec != nil && rec.Managed && rec.Dir == dir && rec.Netns == args.Netns
		if err := p.checkChained(cfg, fcfg, ours); err != nil {
			return err
		}
		// Record the forwarder before starting it, so that DEL and GC
		// find it even when this ADD goes no further.
		if rec == nil || !rec.Managed || rec.Dir != dir {
			if rec != nil && len(rec.Rules) > 0 && rec.Socket != "" {
				if err := p.removeRules(cfg, st, key, rec.Socket, rec.PIDFile, rec.Rules); err != nil {
					p.warnf("could not remove the rules this attachment owned at %s: %v", rec.Socket, err)
				}
			}
			paths := forwarder.Paths(dir)
			rec = &store.Record{Network: key.Network, ContainerID: key.ContainerID, IfName: key.IfName, Netns: args.Netns,
				Socket: paths.Socket, PIDFile: paths.PIDFile, Managed: true, Dir: dir}
			if err := lock.Write(rec); err != nil {
				return err
			}
		}
		ctx, cancel := cfg.context()
		inst, err := forwarder.Ensure(ctx, fcfg)
		cancel()
		if err != nil {
			return &forwarderError{Op: "start", Dir: dir, Err: err}
		}
		socket, pidFile = inst.Socket, inst.PIDFile
	} else {
		if socket, pidFile, err = resolveSocket(cfg, env); err != nil {
			return err
		}
	}

	// owned: the rules recorded as this attachment's; claimed: those and
	// the ones a run that died may have left (the record's pending).
	var owned, claimed []store.OwnedRule
	fid := forwarderID(socket)
	if rec != nil {
		owned, claimed = rec.Rules, rec.Claimed()
		if now := forwarderID(rec.Socket); len(claimed) > 0 && restarted(rec, now) {
			p.warnf("the forwarder at %s was restarted since this attachment's rules were added (control socket inode %d, now %d): they went with it, and a byte-equal rule there now is another client's", rec.Socket, rec.ForwarderID, now)
			owned, claimed = nil, nil
		}
		if rec.Socket != socket && len(claimed) > 0 {
			// The attachment moved to another forwarder: its rules at the
			// old one are no longer wanted.
			if err := p.removeRules(cfg, st, key, rec.Socket, rec.PIDFile, claimed); err != nil {
				p.warnf("could not remove the rules this attachment owned at %s: %v", rec.Socket, err)
			}
			owned, claimed = nil, nil
		}
		if rec.Managed && !cfg.Managed {
			// Told to use another forwarder: the one started before
			// for this attachment has no use left.
			if err := stopManaged(cfg, rec.Dir); err != nil {
				p.warnf("%v", err)
			}
		}
	}

	next := &store.Record{Network: key.Network, ContainerID: key.ContainerID, IfName: key.IfName, Netns: args.Netns,
		Socket: socket, PIDFile: pidFile, ForwarderID: fid, Managed: cfg.Managed, Rules: owned}
	if cfg.Managed {
		next.Dir = fcfg.Dir
	}
	if len(cfg.Mappings) > 0 || len(claimed) > 0 {
		// Write-ahead: record the rules this ADD may add before sending
		// them, so that if it dies after the forwarder took them, the
		// next ADD (or DEL) knows them for this attachment's.
		before := *next
		before.Pending = missingRules(owned, claimed)
		wroteIntent := false
		writeIntent := func(adding []store.OwnedRule) error {
			// Called inside the transaction, with the rules it is about
			// to add, all absent from the live table: while the
			// connection is held no other client can add them, so a
			// pending rule found later was this ADD's, unless another
			// client added it after this run died.
			fresh := missingRules(claimed, adding)
			if len(fresh) == 0 {
				return nil
			}
			ahead := before
			ahead.Pending = append(append([]store.OwnedRule(nil), before.Pending...), fresh...)
			if err := lock.WriteIntent(&ahead); err != nil {
				return err
			}
			wroteIntent = true
			return p.step("add: intent written")
		}
		desired, err := p.apply(cfg, socket, pidFile, claimed, writeIntent, func(rs []store.OwnedRule) {
			// A rollback that failed leaves this update's rules in
			// unknown places: keep owning them so DEL removes them.
			next.Rules = rs
			if werr := lock.Write(next); werr != nil {
				p.warnf("%v", werr)
			}
		})
		if err != nil {
			if (wroteIntent || rec == nil) && nothingChanged(err) {
				// The intent did not happen: record what was before it,
				// even when that is nothing. The DEL that a runtime sends
				// after a failed ADD then goes by a record that owns
				// nothing, rather than by the mappings, which may match a
				// rule that another client holds (the likely reason for
				// the failure).
				if werr := lock.Write(&before); werr != nil {
					p.warnf("%v", werr)
				}
			}
			return err
		}
		next.Rules = desired
		if forwarderID(socket) != fid {
			// Restarted during this ADD: which one holds the rules is
			// not known.
			next.ForwarderID = 0
		}
		if err := p.step("add: applied"); err != nil {
			return err
		}
	}
	switch {
	case len(next.Rules) == 0 && !next.Managed:
		if err := lock.Remove(); err != nil {
			return err
		}
	case sameRecord(rec, next) && lock.Damaged() == nil:
		// A repeated ADD: nothing to write (and no fsync to wait for).
	default:
		if err := lock.Write(next); err != nil {
			return err
		}
	}
	if err := p.step("add: recorded"); err != nil {
		return err
	}
	return p.printResult(cfg, fcfg)
}

// apply runs the one transaction of an ADD and returns the rules owned
// afterwards. intent is called inside the transaction, before anything is
// sent, with the rules it adds (none of them in the live table); an error
// aborts it. onRollbackFail is called with the rules to own when the
// forwarder's state became unknown.
//
// owned are the rules this attachment claims (recorded, or pending from a
// run that died). A desired rule already in the table is adopted only when
// it is one of them: a rule that another client put there byte for byte
// stays that client's, and the update is refused as the forwarder would
// refuse a duplicate.
func (p *Plugin) apply(cfg *Config, socket, pidFile string, owned []store.OwnedRule, intent func([]store.OwnedRule) error, onRollbackFail func([]store.OwnedRule)) ([]store.OwnedRule, error) {
	var (
		desired []store.OwnedRule
		comp    translate.Compiled
	)
	plan := func(live wire.Tables) ([]wire.Edit, error) {
		host := live.Lookup(wire.PifHost)
		if host == nil {
			return nil, &translate.TableError{Pif: wire.PifHost, Err: fmt.Errorf("%w: the forwarder has no %s table", translate.ErrCapability, wire.PifHost)}
		}
		var err error
		comp, err = translate.Compile(cfg.Mappings, cfg.Options, host.Caps)
		if err != nil {
			return nil, err
		}
		var ownedHost []wire.Rule
		mine := map[[wire.RuleSize]byte]bool{}
		others := map[string][]wire.Rule{}
		var otherPifs []string
		for _, o := range owned {
			if o.Pif == wire.PifHost {
				ownedHost = append(ownedHost, o.Rule)
				mine[o.Rule.Key()] = true
				continue
			}
			if _, ok := others[o.Pif]; !ok {
				otherPifs = append(otherPifs, o.Pif)
			}
			others[o.Pif] = append(others[o.Pif], o.Rule)
		}
		for _, r := range comp.Rules {
			if !mine[r.Key()] && host.Contains(r) {
				return nil, comp.Attribute(&translate.TableError{Pif: wire.PifHost, Rule: r, Other: &r, Err: fmt.Errorf(
					"%w: rule %s is already in the table and this attachment does not own it (another client, such as pesto, added it); remove it there or map another port",
					translate.ErrConflict, r)})
			}
		}
		edit, err := translate.Plan(*host, ownedHost, comp.Rules)
		if err != nil {
			return nil, comp.Attribute(err)
		}
		edits := []wire.Edit{edit}
		for _, pif := range otherPifs {
			if live.Lookup(pif) != nil {
				edits = append(edits, wire.Edit{Pif: pif, Remove: others[pif]})
			}
		}
		desired = ownedRules(wire.PifHost, comp.Rules)
		var adding []store.OwnedRule
		for _, r := range edit.Add {
			if !host.Contains(r) {
				adding = append(adding, store.OwnedRule{Pif: wire.PifHost, Rule: r})
			}
		}
		if err := intent(adding); err != nil {
			return nil, err
		}
		return edits, nil
	}
	err := p.update(cfg, socket, pidFile, plan)
	if err != nil {
		var (
			se *ctlclient.StatusError
			me *ctlclient.MixedError
		)
		switch {
		case errors.As(err, &se) && se.Result != nil && se.Result.Status == ctlclient.StatusRollbackFail:
			onRollbackFail(unionRules(owned, se.Result.Added))
		case errors.As(err, &me) && me.Result != nil:
			onRollbackFail(unionRules(owned, me.Result.Added))
		case errors.As(err, &se) && se.Result != nil && se.Result.Status == ctlclient.StatusSafeFail:
			// The forwarder does not say which rule it refused: name the
			// entries behind each rule of the update.
			var notes []string
			for _, r := range comp.Rules {
				if idx := comp.Entries(r); len(idx) > 0 {
					notes = append(notes, fmt.Sprintf("%s from portMappings %s", ruleText(wire.PifHost, r), entryNames(idx)))
				}
			}
			if len(notes) > 0 {
				err = &annotated{Err: err, Note: strings.Join(notes, "; ")}
			}
		}
		return nil, atSocket(socket, err)
	}
	return desired, nil
}

// checkChained refuses to start a second network in a namespace that
// another plugin has already configured, unless allowChained says so.
func (p *Plugin) checkChained(cfg *Config, fcfg forwarder.Config, ours bool) error {
	if cfg.AllowChained {
		return nil
	}
	if r := cfg.PrevResult; r != nil {
		cur, err := current.NewResultFromResult(r)
		if err == nil && len(cur.Interfaces) > 0 {
			return chainedErr(fmt.Sprintf("the previous result already has interface %q", cur.Interfaces[0].Name))
		}
	}
	if _, running, _ := forwarder.Running(fcfg.Dir); running || ours {
		return nil // our own forwarder made the interface
	}
	attached, err := forwarder.Attached(fcfg.NetNS)
	if err != nil {
		return &forwarderError{Op: "inspect the namespace of", Dir: fcfg.Dir, Err: err}
	}
	if attached {
		return chainedErr(fmt.Sprintf("namespace %s already has an interface other than lo", fcfg.NetNS))
	}
	return nil
}

func chainedErr(why string) error {
	return types.NewError(CodeBadConfig, "a managed forwarder would be a second network in this namespace",
		why+`; put passt-portmap first with no "socket" to let it make the network, set "socket" to use a forwarder started elsewhere, or set "allowChained": true`)
}

// forwarderError is a managed forwarder that could not be started,
// inspected or stopped.
type forwarderError struct {
	Op  string
	Dir string
	Err error
}

func (e *forwarderError) Error() string {
	return fmt.Sprintf("could not %s the managed forwarder in %s: %v", e.Op, e.Dir, e.Err)
}
func (e *forwarderError) Unwrap() error { return e.Err }

// printResult writes ADD's result: the previous result unchanged when
// chained, what a managed forwarder configured when it made the network,
// and otherwise an empty result, each in the requested version.
func (p *Plugin) printResult(cfg *Config, fcfg forwarder.Config) error {
	var res types.Result
	switch {
	case cfg.PrevResult != nil:
		res = cfg.PrevResult
	case cfg.Managed:
		r, err := forwarder.ReadResult(fcfg)
		if err != nil {
			return &forwarderError{Op: "read back the network of", Dir: fcfg.Dir, Err: err}
		}
		res = r
	default:
		res = &current.Result{CNIVersion: current.ImplementedSpecVersion}
	}
	out, err := res.GetAsVersion(cfg.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "cannot convert the result", fmt.Sprintf("to version %s: %v", cfg.CNIVersion, err))
	}
	return out.PrintTo(p.Stdout)
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

// missingRules returns the rules of want that are not in have.
func missingRules(have, want []store.OwnedRule) []store.OwnedRule {
	type k struct {
		pif string
		key [wire.RuleSize]byte
	}
	in := make(map[k]bool, len(have))
	for _, o := range have {
		in[k{o.Pif, o.Rule.Key()}] = true
	}
	var out []store.OwnedRule
	for _, o := range want {
		if !in[k{o.Pif, o.Rule.Key()}] {
			out = append(out, o)
		}
	}
	return out
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

// entryNames renders entry indexes as "entry 3" or "entries 0, 2-4".
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

// findPasta refuses a managed configuration whose pasta binary is not
// there: the configuration names a program this host lacks, so it is 7
// (invalid network configuration) naming the key, found before anything
// is recorded or started. STATUS says the same as not ready (50).
func findPasta(cfg *Config) error {
	name := cfg.Pasta
	if name == "" {
		name = forwarder.DefaultPasta
	}
	_, err := exec.LookPath(name)
	if err == nil {
		return nil
	}
	if cfg.Pasta == "" {
		return cfgErr("pasta", "not set, and no %q in PATH (%s): %v; set \"pasta\" to the path of a pasta with a control socket (--conf-path)", name, os.Getenv("PATH"), err)
	}
	return cfgErr("pasta", "%q cannot be run: %v; set it to the path of a pasta with a control socket (--conf-path)", name, err)
}
