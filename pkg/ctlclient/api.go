// Package ctlclient is a client of the passt/pasta control socket
// (protocol version 2, package wire): one connection per transaction, and a
// verified outcome for every update, which version 2 does not send.
//
// A transaction is one connection: the forwarder sends its hello and every
// table; the client either closes (a read) or sends every table back, in one
// write, and waits for the forwarder to close, which it does after it has
// switched to them or refused them. Version 2 replies nothing else, so an
// update's outcome is established afterwards: the tables are read again on
// a fresh connection and judged by the update's own edits (other clients
// may have written in between), and the forwarder's listening sockets are
// looked up under /proc (see package procnet). A socket failure is rolled
// back in a new transaction.
package ctlclient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Client talks to one forwarder's control socket. The zero value with Path
// set is usable. A Client holds no connection between calls and is safe for
// concurrent use; do not copy one after first use (it remembers which
// process the forwarder was).
type Client struct {
	Path    string // control socket path
	PIDFile string // optional: PID file of the forwarder (pasta -P), helps find its process
	// ReadPID, when set, reads the PID file in place of an open of the
	// path PIDFile (which then only names it in messages): the core sets
	// it for a forwarder it manages, whose PID file lies under its data
	// directory and is read only through that directory's safe layer.
	ReadPID func() (int, error)
	// RetryMin and RetryMax bound the backoff between connect attempts
	// while the socket is missing or refuses connections (defaults 1ms,
	// 10ms). A connect to a forwarder busy with another client does not
	// poll: it waits in the kernel until the forwarder accepts.
	RetryMin, RetryMax time.Duration
	// StartWait is how long a socket that is missing (ENOENT) or refuses
	// connections (ECONNREFUSED) is retried, for a forwarder that is still
	// starting (default 500ms). A dead forwarder answers so for good: the
	// call then ends with an *UnreachableError well before Timeout. A busy
	// forwarder (EAGAIN) is retried until the deadline.
	StartWait time.Duration
	// Timeout bounds each call when ctx has no earlier deadline (default 10s).
	Timeout time.Duration
	// ListenWait is how long a listener check polls before it declares a
	// port not listening (default 200ms; the forwarder binds synchronously
	// before it closes the connection, so this is a margin).
	ListenWait time.Duration
	// ListenAddrs, when set, says on which addresses the forwarder listens
	// for rule r of pif (ctltest.Server.ListenAddrs, whose sockets are on
	// loopback). Nil means as pasta does: "::" for a dual-stack rule (one
	// IPv6 socket for both families), else the rule's listen address.
	ListenAddrs func(pif string, r wire.Rule) []netip.Addr

	// Reached, when set, is called on every connection with the identity
	// of the forwarder it reached, before the tables are read; an error it
	// returns ends the call there, before anything is sent (a caller that
	// must talk to one forwarder throughout returns an
	// *OtherForwarderError for another).
	Reached func(Identity) error

	// Step is a test hook, nil in production: when set, it is called
	// right after an update's tables were sent ("update: sent") and after
	// its rollback was sent ("rollback: sent"), before either is verified;
	// an error it returns ends the call there, unverified, as if the
	// process had been killed at that point.
	Step func(name string) error

	mu      sync.Mutex
	lastPID int // the forwarder found last time, tried first (it is checked again)
}

// Snapshot is what one read-only transaction saw.
type Snapshot struct {
	Hello  wire.Hello
	Tables wire.Tables
	// PeerUID is the forwarder's uid (SO_PEERCRED).
	PeerUID uint32
	// Identity is the forwarder's (unknown when its socket file changed
	// during the connect).
	Identity Identity
}

// Read reads the hello and all tables and closes without sending.
func (c *Client) Read(ctx context.Context) (*Snapshot, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	s, snap, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	s.close()
	return snap, nil
}

// Planner is called inside the transaction with the live tables (do not
// modify them) and returns this update's edits. An error aborts the
// transaction before anything is sent; Update returns it wrapped (%w).
type Planner func(live wire.Tables) ([]wire.Edit, error)

// UpdateOptions tune Update.
type UpdateOptions struct {
	// NoVerify skips reading back and checking listeners: the result is
	// StatusUnverified when the tables were sent.
	NoVerify bool
}

// Status is the outcome of one update.
type Status int

// The outcomes. Version 2 sends none of them: the client establishes them.
const (
	StatusSuccess      Status = iota // new tables active, every rule of this update listens (a weak one on some port)
	StatusUnverified                 // tables sent; verification was not asked for
	StatusSafeFail                   // rejected before any socket operation; nothing changed
	StatusSocketFail                 // switched, some rule did not listen; rolled back
	StatusRollbackFail               // as socket fail, but the rollback did not restore the previous state
)

// PifRule is a rule in a named pif's table (the one type that store
// records and the core's set operations use too).
type PifRule = wire.PifRule

// RuleFailure is a rule that does not listen: a non-weak rule with ports
// that have no socket, or a weak rule none of whose ports has one (the
// forwarder stops binding at either, so both silence the rules after it).
type RuleFailure struct {
	PifRule
	Ports []uint16 // ports of the rule's range with no listening socket
	// BlockedBy, when set, is the first rule of the tables that does not
	// listen, earlier than this one: the forwarder binds no rule after it,
	// so this rule's failure may be its doing.
	BlockedBy *PifRule
}

// BlockedError is the cause of a socket fail in which rules of the update
// did not listen after an earlier rule of the tables that does not listen
// (maybe another client's): the forwarder stops binding at the first rule
// that fails, so that rule blocks them.
type BlockedError struct {
	Blocker RuleFailure // the first rule that does not listen
	Mine    bool        // whether Blocker is one of the update's own rules
	Blocked []PifRule   // the update's rules after it that did not listen
}

func (e *BlockedError) Error() string {
	whose := "another owner's"
	if e.Mine {
		whose = "this update's"
	}
	why := fmt.Sprintf("port%s %s not listening", plural(len(e.Blocker.Ports)), wire.PortList(e.Blocker.Ports))
	if e.Blocker.Rule.Flags.Has(wire.FlagWeak) {
		why = "weak, but none of its ports listens"
	}
	return fmt.Sprintf("blocked by an earlier rule of the table, %s %s (%s): the forwarder binds no rule after the first that fails, so %s could not listen; free its port or remove that rule",
		whose, e.Blocker.PifRule, why, joinRules(e.Blocked))
}

// VerifyMethod says how listening sockets were attributed to the forwarder.
type VerifyMethod string

// Verification methods.
const (
	VerifyNone   VerifyMethod = "none"          // not verified
	VerifyInodes VerifyMethod = "socket inodes" // /proc/PID/fd of the forwarder
	VerifyUID    VerifyMethod = "listener uid"  // /proc/net/* uid column
)

// Result describes one update.
type Result struct {
	Status  Status
	Edits   []wire.Edit // as planned
	Added   []PifRule   // rules this update put in that were not there
	Removed []PifRule   // rules this update took out
	// Failed lists this update's rules (added or kept for the caller) that
	// did not listen.
	Failed []RuleFailure
	// Warnings lists other clients' rules that did not listen.
	Warnings []RuleFailure
	// Unchecked lists this update's rules whose listeners live
	// where the client cannot look (SPLICE without root: the guest's namespace).
	Unchecked []PifRule
	Method    VerifyMethod
	Tables    wire.Tables // the last tables read back (nil if none)
	// Cause is what made a safe fail, socket fail or rollback fail, e.g.
	// "forwarder closed the connection" or the rollback's own error.
	Cause error
}

// Update runs one transaction: read all tables, call plan, apply its edits
// (wire.Table.Apply), send every table back in one write, close. It then
// establishes the outcome as docs/wire-protocol.md describes, rolling back
// a socket fail in a new transaction. It returns a *StatusError for a safe fail,
// socket fail or rollback fail, a *wire.MismatchError (wrapped) for a
// protocol mismatch, an *UnreachableError for a forwarder that cannot be
// reached in time, and the planner's error wrapped.
//
// An update with nothing to change (every rule to add present, every rule
// to remove absent) sends nothing, and is still verified.
func (c *Client) Update(ctx context.Context, plan Planner, opts UpdateOptions) (*Result, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.update(ctx, plan, opts)
}

// Verification is the state of a set of wanted rules.
type Verification struct {
	Missing      []PifRule     // not in the live tables
	NotListening []RuleFailure // present, and not listening (see RuleFailure)
	Warnings     []RuleFailure // other rules that do not listen
	Method       VerifyMethod
	Tables       wire.Tables
	// Unchecked lists present rules whose listeners live where
	// the client cannot look (SPLICE without root: the guest's namespace).
	Unchecked []PifRule
}

// Verify reads the tables and checks that every wanted rule is present and
// listening (a weak rule on at least one port). It changes nothing (CHECK
// uses it).
func (c *Client) Verify(ctx context.Context, want []PifRule) (*Verification, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var missing []PifRule
	mine := func(ts wire.Tables) []PifRule {
		missing = missing[:0]
		var have []PifRule
		for _, w := range want {
			if present(ts, w) {
				have = append(have, w)
			} else {
				missing = append(missing, w)
			}
		}
		return have
	}
	l, err := c.lookSettled(ctx, mine, listening)
	if l.snap == nil {
		return nil, err
	}
	v := &Verification{Tables: l.snap.Tables, Method: l.f.method(), Missing: missing}
	if err != nil {
		return v, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	v.NotListening, v.Warnings, v.Unchecked = l.lc.failed, l.lc.warnings, l.lc.unchecked
	return v, nil
}

// StatusError reports an update that did not succeed.
type StatusError struct {
	Path   string
	Result *Result
}

func (e *StatusError) Error() string {
	r := e.Result
	if r == nil {
		return "update of forwarder at " + e.Path + " failed"
	}
	var b strings.Builder
	switch r.Status {
	case StatusSafeFail:
		fmt.Fprintf(&b, "forwarder at %s refused the update; nothing changed", e.Path)
		if r.Cause != nil {
			fmt.Fprintf(&b, ": %v", r.Cause)
		}
		if ch := changes(r); ch != "" {
			fmt.Fprintf(&b, " (update: %s)", ch)
		}
	case StatusSocketFail, StatusRollbackFail:
		fmt.Fprintf(&b, "forwarder at %s took the update but could not listen: %s", e.Path, failures(r.Failed))
		if r.Status == StatusSocketFail && errors.Is(r.Cause, ErrNothingToUndo) {
			fmt.Fprintf(&b, "; %v", r.Cause)
			writeWarnings(&b, r.Warnings)
			break
		}
		if r.Status == StatusSocketFail {
			b.WriteString("; the update was rolled back and the previous rules listen again (is another process using the port?)")
			if r.Cause != nil {
				fmt.Fprintf(&b, "; %v", r.Cause)
			}
			writeWarnings(&b, r.Warnings)
			break
		}
		b.WriteString("; the rollback did not restore the previous state")
		if r.Cause != nil {
			fmt.Fprintf(&b, ": %v", r.Cause)
		}
		writeWarnings(&b, r.Warnings)
		if r.Tables != nil {
			fmt.Fprintf(&b, "; active now: %s", activeRules(r.Tables))
		} else {
			b.WriteString("; the active tables are unknown")
		}
	default:
		fmt.Fprintf(&b, "update of forwarder at %s: %v", e.Path, r.Status)
		if r.Cause != nil {
			fmt.Fprintf(&b, ": %v", r.Cause)
		}
	}
	return b.String()
}

// writeWarnings names other clients' rules that do not listen: the
// forwarder stops binding at the first rule that fails, so one of them can
// silence the rules after it.
func writeWarnings(b *strings.Builder, ws []RuleFailure) {
	if len(ws) > 0 {
		fmt.Fprintf(b, "; other rules not listening (the forwarder stops binding at the first failure): %s", failures(ws))
	}
}

// Unwrap returns the cause, if any.
func (e *StatusError) Unwrap() error {
	if e.Result == nil {
		return nil
	}
	return e.Result.Cause
}

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusSuccess:
		return "success"
	case StatusUnverified:
		return "applied, unverified"
	case StatusSafeFail:
		return "safe fail"
	case StatusSocketFail:
		return "socket fail"
	case StatusRollbackFail:
		return "rollback fail"
	}
	return fmt.Sprintf("status %d", int(s))
}

// String gives the rule and the ports that do not listen, and the earlier
// rule that blocks it, if any.
func (f RuleFailure) String() string {
	s := fmt.Sprintf("%s: port%s %s not listening", f.PifRule, plural(len(f.Ports)), wire.PortList(f.Ports))
	if f.Rule.Flags.Has(wire.FlagWeak) && f.BlockedBy == nil {
		s += " (weak, but with no port listening the forwarder binds no rule after it)"
	}
	if f.BlockedBy != nil {
		s += " (after " + f.BlockedBy.String() + ", which does not listen)"
	}
	return s
}

// MixedError reports an update of which only some edits are in effect
// afterwards: neither applied nor refused. Another client may have changed
// the same rules in between; nothing was rolled back.
type MixedError struct {
	Path      string
	Absent    []PifRule // rules this update added that are not in the tables
	Remaining []PifRule // rules this update removed that are still there
	Result    *Result
}

func (e *MixedError) Error() string {
	return fmt.Sprintf("forwarder at %s: update only partly in effect (another client may have changed the same rules); added but absent: [%s]; removed but still present: [%s]",
		e.Path, joinRules(e.Absent), joinRules(e.Remaining))
}

// UnreachableError reports a forwarder that could not be reached: no
// socket, connection refused, or busy past the deadline.
type UnreachableError struct {
	Path string
	Err  error // the last error
}

func (e *UnreachableError) Error() string {
	return "forwarder at " + e.Path + " unreachable: " + e.Err.Error()
}
func (e *UnreachableError) Unwrap() error { return e.Err }
