// Package ctlclient is a client of the passt/pasta control socket
// (protocol version 2, package wire): one connection per transaction, and a
// verified outcome for every update, which version 2 does not send.
//
// API CONTRACT (stub written by the lead so that other packages can be built
// in parallel; the owner of this package replaces the bodies, keeps the
// exported names and may add to them).
package ctlclient

import (
	"context"
	"errors"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
)

// Client talks to one forwarder's control socket. The zero value with Path
// set is usable. A Client holds no connection between calls and is safe for
// concurrent use.
type Client struct {
	Path    string // control socket path
	PIDFile string // optional: PID file of the forwarder (pasta -P), helps find its process
	// RetryMin and RetryMax bound the backoff between connect attempts
	// while the forwarder is busy with another client (defaults 1ms, 50ms).
	RetryMin, RetryMax time.Duration
}

// Snapshot is what one read-only transaction saw.
type Snapshot struct {
	Hello  wire.Hello
	Tables wire.Tables
	// PeerUID is the forwarder's uid (SO_PEERCRED).
	PeerUID uint32
}

// Read reads the hello and all tables and closes without sending.
func (c *Client) Read(ctx context.Context) (*Snapshot, error) {
	return nil, errors.New("not implemented")
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
	StatusSuccess      Status = iota // new tables active, every non-weak rule of this update listens
	StatusUnverified                 // tables sent; verification was not asked for
	StatusSafeFail                   // rejected before any socket operation; nothing changed
	StatusSocketFail                 // switched, some non-weak rule did not listen; rolled back
	StatusRollbackFail               // as socket fail, but the rollback did not restore the previous state
)

// PifRule is a rule in a named pif's table.
type PifRule struct {
	Pif  string
	Rule wire.Rule
}

// RuleFailure is a non-weak rule with ports that do not listen.
type RuleFailure struct {
	PifRule
	Ports []uint16 // ports of the rule's range with no listening socket
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
	// Warnings lists other clients' non-weak rules that did not listen.
	Warnings []RuleFailure
	Method   VerifyMethod
	Tables   wire.Tables // the last tables read back (nil if none)
	// Cause is what made a safe fail, socket fail or rollback fail, e.g.
	// "forwarder closed the connection" or the rollback's own error.
	Cause error
}

// Update runs one transaction: read all tables, call plan, apply its edits
// (wire.Table.Apply), send every table back in one write, close. It then
// establishes the outcome as PROTOCOL.md describes, rolling back a socket
// fail in a new transaction. It returns a *StatusError for a safe fail,
// socket fail or rollback fail, a *wire.MismatchError (wrapped) for a
// protocol mismatch, an *UnreachableError for a forwarder that cannot be
// reached in time, and the planner's error wrapped.
func (c *Client) Update(ctx context.Context, plan Planner, opts UpdateOptions) (*Result, error) {
	return nil, errors.New("not implemented")
}

// Verification is the state of a set of wanted rules.
type Verification struct {
	Missing      []PifRule     // not in the live tables
	NotListening []RuleFailure // present, non-weak, with ports that do not listen
	Warnings     []RuleFailure // other non-weak rules that do not listen
	Method       VerifyMethod
	Tables       wire.Tables
}

// Verify reads the tables and checks that every wanted rule is present and,
// unless weak, listening. It changes nothing (CHECK uses it).
func (c *Client) Verify(ctx context.Context, want []PifRule) (*Verification, error) {
	return nil, errors.New("not implemented")
}

// StatusError reports an update that did not succeed.
type StatusError struct {
	Path   string
	Result *Result
}

func (e *StatusError) Error() string { return "update of " + e.Path + " failed" }

// UnreachableError reports a forwarder that could not be reached: no
// socket, connection refused, or busy past the deadline.
type UnreachableError struct {
	Path string
	Err  error // the last error
}

func (e *UnreachableError) Error() string { return "forwarder at " + e.Path + " unreachable: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }
