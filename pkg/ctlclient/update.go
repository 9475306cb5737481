package ctlclient

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// update runs Update within ctx.
func (c *Client) update(ctx context.Context, plan Planner, opts UpdateOptions) (*Result, error) {
	res := &Result{Method: VerifyNone}
	var (
		planErr error
		fresh   bool // see freshEndpoints
		mine    []PifRule
		// An update with nothing to change is judged on the connection
		// that read the tables: it needs no other.
		idle    look
		idleErr error
	)
	applied := func(ts wire.Tables) bool {
		absent, remaining, _ := judge(ts, res.Added, res.Removed)
		return len(absent) == 0 && len(remaining) == 0
	}
	settled := func(l look) bool { return !applied(l.snap.Tables) || listening(l) }
	var onIdle func(s *session, snap *Snapshot)
	if !opts.NoVerify {
		onIdle = func(s *session, snap *Snapshot) {
			idle, idleErr = c.lookOn(ctx, s, snap, func(wire.Tables) []PifRule { return mine }, settled)
		}
	}
	tx, err := c.transact(ctx, func(live wire.Tables) (wire.Tables, error) {
		edits, err := plan(live)
		if err != nil {
			planErr = err
			return nil, err
		}
		res.Edits, mine = edits, wanted(edits)
		next, added, removed, err := applyEdits(live, edits)
		if err != nil {
			return nil, err
		}
		res.Added, res.Removed = added, removed
		if len(added) == 0 && len(removed) == 0 {
			return nil, nil // nothing to change: send nothing
		}
		fresh = c.freshEndpoints(live, next, added, removed)
		return next, nil
	}, onIdle)
	switch {
	case planErr != nil:
		return nil, fmt.Errorf("control socket %s: plan: %w", c.Path, planErr)
	case errors.Is(err, errUnknownPif):
		res.Status, res.Cause = StatusSafeFail, err
		return res, &StatusError{Path: c.Path, Result: res}
	case err != nil && tx.sent == nil:
		return nil, err
	case opts.NoVerify:
		res.Status = StatusUnverified
		if err != nil {
			res.Cause = err
			return res, err
		}
		return res, nil
	}
	sendErr := err // the tables may or may not have arrived: look
	var l look
	if tx.sent == nil {
		l, err = idle, idleErr
	} else {
		if err := c.step("update: sent"); err != nil {
			res.Status, res.Cause = StatusUnverified, err
			return res, err
		}
		// Judge by this update's own edits, and check the listeners of
		// its rules: at once, from the tables sent, when that settles it
		// (see lookSent); else on a fresh connection (see lookOn).
		var ok bool
		if sendErr == nil && fresh {
			l, ok = c.lookSent(tx, mine, res.Removed)
		}
		if !ok {
			l, err = c.lookSettled(ctx, func(wire.Tables) []PifRule { return mine }, settled)
		}
	}
	if err != nil {
		res.Status, res.Cause = StatusUnverified, err
		if l.snap != nil {
			res.Tables = l.snap.Tables
			return res, fmt.Errorf("control socket %s: update applied, listeners unknown: %w", c.Path, err)
		}
		return res, fmt.Errorf("control socket %s: update sent, outcome unknown: %w", c.Path, err)
	}
	res.Tables, res.Method = l.snap.Tables, l.f.method()
	absent, remaining, inEffect := judge(l.snap.Tables, res.Added, res.Removed)
	switch {
	case len(absent) == 0 && len(remaining) == 0:
		// applied
	case inEffect == 0:
		res.Status = StatusSafeFail
		res.Cause = errors.New("the forwarder closed the connection without switching (a rule was invalid or conflicted)")
		if sendErr != nil {
			res.Cause = sendErr
		}
		return res, &StatusError{Path: c.Path, Result: res}
	default:
		return res, &MixedError{Path: c.Path, Absent: absent, Remaining: remaining, Result: res}
	}

	lc := l.lc
	res.Failed, res.Warnings, res.Unchecked = lc.failed, lc.warnings, lc.unchecked
	if len(lc.failed) == 0 {
		res.Status = StatusSuccess
		return res, nil
	}

	blocked := joinCauses(weakFailed(lc), blockedBy(lc))
	if len(res.Added) == 0 && len(res.Removed) == 0 {
		// Nothing was changed, so there is nothing to undo.
		res.Status = StatusSocketFail
		res.Cause = joinCauses(ErrNothingToUndo, blocked)
		return res, &StatusError{Path: c.Path, Result: res}
	}
	// Socket fail: undo this update's own edits, then look again.
	res.Status = StatusRollbackFail
	rerr := c.rollback(ctx, res)
	var stop *stopped
	if errors.As(rerr, &stop) {
		res.Status, res.Cause = StatusUnverified, stop.err
		return res, stop.err
	}
	if rerr == nil {
		res.Status = StatusSocketFail
	}
	res.Cause = joinCauses(rerr, blocked)
	return res, &StatusError{Path: c.Path, Result: res}
}

// stopped carries the Step hook's error out of a rollback: the call ends
// there, with nothing more judged or reported.
type stopped struct{ err error }

func (s *stopped) Error() string { return s.err.Error() }
func (s *stopped) Unwrap() error { return s.err }

// step calls the Step hook, if any.
func (c *Client) step(name string) error {
	if c.Step == nil {
		return nil
	}
	return c.Step(name)
}

// blockedBy names the earlier rule that kept rules of the update from
// listening, if the first rule that does not listen comes before some of
// them; nil otherwise.
func blockedBy(lc listenCheck) error {
	if lc.blocker == nil {
		return nil
	}
	be := &BlockedError{Blocker: *lc.blocker}
	for _, f := range lc.failed {
		if f.BlockedBy != nil {
			be.Blocked = append(be.Blocked, f.PifRule)
		} else if f.Key() == lc.blocker.Key() {
			be.Mine = true
		}
	}
	if len(be.Blocked) == 0 {
		return nil
	}
	return be
}

// weakFailed says why weak rules of the update that bind no port at all
// fail it, when there are such rules (nil otherwise).
func weakFailed(lc listenCheck) error {
	var weak []PifRule
	for _, f := range lc.failed {
		if f.Rule.Flags.Has(wire.FlagWeak) && f.BlockedBy == nil {
			weak = append(weak, f.PifRule)
		}
	}
	if len(weak) == 0 {
		return nil
	}
	return fmt.Errorf("weak rule %s binds none of its ports, and the forwarder binds no rule after the first that binds nothing, weak or not: it would silence every later rule of the forwarder", joinRules(weak))
}

// joinCauses joins two causes, either of which may be nil, on one line.
func joinCauses(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return fmt.Errorf("%w; %w", a, b)
}

// rollback undoes res's edits in a new transaction and checks that the
// rules it removed are back, the rules it added are gone, and the rules of
// the caller that stay listen. It records what it read in res.
func (c *Client) rollback(ctx context.Context, res *Result) error {
	undo := inverse(res.Added, res.Removed)
	_, err := c.transact(ctx, func(live wire.Tables) (wire.Tables, error) {
		next, added, removed, err := applyEdits(live, undo)
		if err != nil || len(added) == 0 && len(removed) == 0 {
			return nil, err
		}
		return next, nil
	}, nil)
	if err != nil {
		// The undo may still have arrived: look before judging.
		err = fmt.Errorf("rollback transaction: %w", err)
	}
	if serr := c.step("rollback: sent"); serr != nil {
		return &stopped{serr}
	}
	// What must listen after it: the caller's rules that stay, and the
	// restored ones.
	added := map[wire.PifRuleKey]bool{}
	for _, a := range res.Added {
		added[a.Key()] = true
	}
	var keep []PifRule
	for _, m := range wanted(res.Edits) {
		if !added[m.Key()] {
			keep = append(keep, m)
		}
	}
	keep = append(keep, res.Removed...)
	undone := func(ts wire.Tables) bool {
		back, gone, _ := judge(ts, res.Removed, res.Added)
		return len(back) == 0 && len(gone) == 0
	}
	l, lerr := c.lookSettled(ctx, func(wire.Tables) []PifRule { return keep },
		func(l look) bool { return !undone(l.snap.Tables) || listening(l) })
	if l.snap == nil {
		res.Tables = nil
		return errors.Join(err, fmt.Errorf("read back after rollback: %w", lerr))
	}
	res.Tables, res.Method = l.snap.Tables, l.f.method()
	// The rollback's own edits: this update's removed rules back, added gone.
	back, gone, _ := judge(l.snap.Tables, res.Removed, res.Added)
	if len(back) > 0 || len(gone) > 0 {
		return errors.Join(err, fmt.Errorf("after rollback, removed rules still absent: [%s]; added rules still present: [%s]", joinRules(back), joinRules(gone)))
	}
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	res.Warnings = l.lc.warnings
	// A rule of the caller blocked by another owner's rule that this
	// update did not touch was blocked before it too: the rollback did
	// restore that state.
	touched := map[wire.PifRuleKey]bool{}
	for _, pr := range append(append(append([]PifRule(nil), res.Added...), res.Removed...), keep...) {
		touched[pr.Key()] = true
	}
	var failed []RuleFailure
	for _, f := range l.lc.failed {
		if f.BlockedBy == nil || touched[f.BlockedBy.Key()] {
			failed = append(failed, f)
		}
	}
	if len(failed) > 0 {
		return errors.Join(err, fmt.Errorf("after rollback, not listening: %s", failures(failed)))
	}
	return nil
}

// freshEndpoints reports whether the listeners of the rules an update
// adds and removes tell its switch apart: no rule of the tables before
// (live) listens where an added rule does, and no rule of the tables
// after (next) where a removed rule did. Then a listener of the forwarder
// where an added rule listens, and none where a removed one did, means
// that the forwarder switched to next (see lookSent).
func (c *Client) freshEndpoints(live, next wire.Tables, added, removed []PifRule) bool {
	clash := func(ts wire.Tables, pr PifRule) bool {
		t := ts.Lookup(pr.Pif)
		if t == nil {
			return false
		}
		mine := c.wantAddrs(nil, pr.Pif, pr.Rule)
		for _, r := range t.Rules {
			if r.Proto != pr.Rule.Proto || r.Last < pr.Rule.First || r.First > pr.Rule.Last {
				continue
			}
			for _, a := range c.wantAddrs(nil, pr.Pif, r) {
				for _, b := range mine {
					if a == b {
						return true
					}
				}
			}
		}
		return false
	}
	for _, pr := range added {
		if clash(live, pr) {
			return false
		}
	}
	for _, pr := range removed {
		if clash(next, pr) {
			return false
		}
	}
	return true
}

// tx is what one transaction sent, and to whom.
type tx struct {
	// sent are the tables sent (or that may have been, when an error
	// came with them); nil when nothing was sent.
	sent wire.Tables
	peer ucred    // the forwarder end's credentials (SO_PEERCRED)
	id   Identity // the forwarder reached (see Client.Reached)
}

// transact runs one transaction: open, let fn compute the tables to send
// from the live ones (nil: send nothing), send, close. When fn sends
// nothing and idle is set, idle runs with the connection still open (the
// forwarder serves no one else meanwhile).
func (c *Client) transact(ctx context.Context, fn func(live wire.Tables) (wire.Tables, error), idle func(*session, *Snapshot)) (tx, error) {
	s, snap, err := c.open(ctx)
	if err != nil {
		return tx{}, err
	}
	defer s.close()
	t := tx{peer: s.peer, id: s.id}
	next, err := fn(snap.Tables)
	if err != nil {
		return t, err
	}
	if next == nil {
		if idle != nil {
			idle(s, snap)
		}
		return t, nil
	}
	t.sent = next
	return t, s.send(next)
}

var errUnknownPif = errors.New("no such pif")

// ErrNothingToUndo is the Cause of a socket fail of an update whose rules
// were all in place already: nothing was sent and nothing rolled back.
var ErrNothingToUndo = errors.New("the update changed nothing (its rules were in place already), so there was nothing to roll back")

// applyEdits applies edits to a copy of live and returns it with the rules
// that it actually adds and removes (the others are no-ops). An edit of a
// pif the forwarder does not have is an error: nothing is sent.
func applyEdits(live wire.Tables, edits []wire.Edit) (next wire.Tables, added, removed []PifRule, err error) {
	next = live.Clone()
	for _, e := range edits {
		t := next.Lookup(e.Pif)
		if t == nil {
			var names []string
			for _, t := range live {
				names = append(names, t.Name())
			}
			return nil, nil, nil, fmt.Errorf("edit of pif %q: %w (the forwarder has %s)", e.Pif, errUnknownPif, strings.Join(names, ", "))
		}
		before := *t
		*t = t.Apply(e)
		for _, r := range e.Add {
			if !before.Contains(r) && t.Contains(r) && !containsPR(added, PifRule{Pif: e.Pif, Rule: r}) {
				added = append(added, PifRule{Pif: e.Pif, Rule: r})
			}
		}
		for _, r := range e.Remove {
			if before.Contains(r) && !t.Contains(r) && !containsPR(removed, PifRule{Pif: e.Pif, Rule: r}) {
				removed = append(removed, PifRule{Pif: e.Pif, Rule: r})
			}
		}
	}
	return next, added, removed, nil
}

func containsPR(list []PifRule, pr PifRule) bool {
	for _, x := range list {
		if x.Key() == pr.Key() {
			return true
		}
	}
	return false
}

// judge compares ts with the rules an update added and removed: absent are
// the added rules not present, remaining the removed rules still present,
// inEffect how many of the edits are in effect.
func judge(ts wire.Tables, added, removed []PifRule) (absent, remaining []PifRule, inEffect int) {
	for _, a := range added {
		if present(ts, a) {
			inEffect++
		} else {
			absent = append(absent, a)
		}
	}
	for _, r := range removed {
		if present(ts, r) {
			remaining = append(remaining, r)
		} else {
			inEffect++
		}
	}
	return absent, remaining, inEffect
}

// inverse returns the edits that undo adding added and removing removed.
func inverse(added, removed []PifRule) []wire.Edit {
	var edits []wire.Edit
	idx := map[string]int{}
	get := func(pif string) *wire.Edit {
		i, ok := idx[pif]
		if !ok {
			i = len(edits)
			idx[pif] = i
			edits = append(edits, wire.Edit{Pif: pif})
		}
		return &edits[i]
	}
	for _, a := range added {
		e := get(a.Pif)
		e.Remove = append(e.Remove, a.Rule)
	}
	for _, r := range removed {
		e := get(r.Pif)
		e.Add = append(e.Add, r.Rule)
	}
	return edits
}

// wanted lists the rules the edits want present: added or kept for the caller.
func wanted(edits []wire.Edit) []PifRule {
	var out []PifRule
	for _, e := range edits {
		for _, r := range e.Add {
			out = append(out, PifRule{Pif: e.Pif, Rule: r})
		}
	}
	return out
}

func changes(r *Result) string {
	var parts []string
	for _, a := range r.Added {
		parts = append(parts, "add "+a.String())
	}
	for _, x := range r.Removed {
		parts = append(parts, "remove "+x.String())
	}
	return strings.Join(parts, ", ")
}

func failures(fs []RuleFailure) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.String()
	}
	return strings.Join(parts, "; ")
}

func joinRules(prs []PifRule) string {
	parts := make([]string, len(prs))
	for i, pr := range prs {
		parts[i] = pr.String()
	}
	return strings.Join(parts, ", ")
}

// activeRules lists the tables' rules, at most 16 per pif.
func activeRules(ts wire.Tables) string {
	var parts []string
	for _, t := range ts {
		var rs []string
		for i, r := range t.Rules {
			if i == 16 {
				rs = append(rs, fmt.Sprintf("and %d more", len(t.Rules)-16))
				break
			}
			rs = append(rs, strings.TrimSpace(r.String()))
		}
		parts = append(parts, fmt.Sprintf("%s [%s]", t.Name(), strings.Join(rs, ", ")))
	}
	return strings.Join(parts, "; ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
