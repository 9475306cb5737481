package attach

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Kind is the outcome of a failed call, runtime-neutral; each front end
// maps it onto its runtime's codes (CNI: the README's table).
type Kind int

// The kinds of failure.
const (
	KindUnknown      Kind = iota // cannot be named
	KindBadConfig                // bad configuration or mappings
	KindUnreachable              // forwarder unreachable or busy past the timeout; record lock busy
	KindNotAvailable             // not ready (Status only)
	KindSafeFail                 // rejected, nothing changed
	KindSocketFail               // ports could not listen, rolled back
	KindRollbackFail             // rollback failed, or only partly in effect: state unknown
	KindMismatch                 // protocol mismatch or undecodable stream
	KindCheckFailed              // CHECK: owned rules missing or not listening
	KindIO                       // a record or file that cannot be used
)

var kindNames = [...]string{"unknown", "bad configuration", "unreachable", "not available", "safe fail",
	"socket fail", "rollback fail", "protocol mismatch", "check failed", "I/O"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", int(k))
}

// Kinds returns every kind, KindUnknown first.
func Kinds() []Kind {
	out := make([]Kind, len(kindNames))
	for i := range out {
		out[i] = Kind(i)
	}
	return out
}

// kindCodes is the one table from kind to number (the README's error
// table). 7, 11 and 50 are the CNI specification's own codes, 5 its I/O
// failure; 100 to 104 are the plugin's.
var kindCodes = map[Kind]int{
	KindBadConfig:    7,
	KindUnreachable:  11,
	KindNotAvailable: 50,
	KindSafeFail:     100,
	KindSocketFail:   101,
	KindRollbackFail: 102,
	KindMismatch:     103,
	KindCheckFailed:  104,
	KindIO:           5,
}

// Code is the number of a failure of kind k, the same whatever front end
// reports it: the CNI error code and the netavark driver's exit status,
// so that a user reads the same number from either runtime. What cannot
// be named (KindUnknown) has a number of each runtime's own, unnamed
// (CNI 999; an exit status, 1).
func (k Kind) Code(unnamed int) int {
	if c, ok := kindCodes[k]; ok {
		return c
	}
	return unnamed
}

// Error is a failure put into words: its kind, a short message and the
// details (which entry, which ports, which socket, why). Describe makes
// one of any error; the core returns one itself where only it knows the
// words.
type Error struct {
	Kind    Kind
	Msg     string
	Details string
	// Failed are the rules whose host ports did not listen (socket and
	// rollback fail), with the ports.
	Failed []ctlclient.RuleFailure
	Err    error // the error described, if any
}

func (e *Error) Error() string {
	if e.Details == "" {
		return e.Msg
	}
	return e.Msg + "; " + e.Details
}

func (e *Error) Unwrap() error { return e.Err }

// waitedError is the outcome of an ADD that another process ran for this
// one (group commit, see queue.go), put into words there with the names
// of settings and mappings left open (placeholders): Describe fills them
// in with the front end's Dialect.
type waitedError struct{ e Error }

func (w *waitedError) Error() string { return w.named(neutral{}).Error() }

func (w *waitedError) named(d Dialect) *Error {
	e := w.e
	e.Msg, e.Details = fill(e.Msg, d), fill(e.Details, d)
	e.Err = w
	return &e
}

// ConfigError is a bad configuration value. The core names it by
// Setting, which the front end's Dialect renders (List and Entry name an
// entry of a list setting, pastaArgs; Also more settings at fault with
// it, such as the parts of a side that clash); a front end names what
// only its input has by Key, a place its Dialect's Locate takes (CNI's
// "cniVersion", netavark's "network_options.interface_name").
type ConfigError struct {
	Key     string
	Setting Setting
	List    bool
	Entry   int
	Also    []Setting
	Err     error
}

func (e *ConfigError) Error() string { return e.named(neutral{}) }
func (e *ConfigError) Unwrap() error { return e.Err }

func (e *ConfigError) named(d Dialect) string {
	place := e.Key
	if e.Setting != 0 {
		place = settingName(d, e.Setting)
		if e.List {
			place += fmt.Sprintf("[%d]", e.Entry)
		}
		for _, s := range e.Also {
			place += ", " + settingName(d, s)
		}
	}
	return d.Locate(place) + ": " + e.Err.Error()
}

// MappingError is a bad port mapping: the Index-th of the caller's list,
// the field at fault (FieldNone: the mapping as a whole), and why. The
// front end's Dialect names the field.
type MappingError struct {
	Index int
	Field Field
	Err   error
}

func (e *MappingError) Error() string { return e.named(neutral{}) }
func (e *MappingError) Unwrap() error { return e.Err }

func (e *MappingError) named(d Dialect) string {
	return d.Locate(d.Mapping(e.Index, e.Field)) + ": " + e.Err.Error()
}

// SecondNetworkError refuses a managed forwarder in a namespace that
// another network has already configured: Why says how that was seen.
// What the user can do depends on the front end's settings (Describe).
type SecondNetworkError struct{ Why string }

func (e *SecondNetworkError) Error() string { return e.advice(neutral{}) }

func (e *SecondNetworkError) advice(d Dialect) string {
	socket, chained := d.Setting(SettingSocket), d.Setting(SettingAllowChained)
	if socket != "" && chained != "" {
		return fmt.Sprintf("%s, but no previous result names it; list passt-portmap after the plugin that made it (the previous result then chains it: host ports only, that network untouched), "+
			"put passt-portmap first with no %q to let it make the network, set %q to use a forwarder started elsewhere, or set %q: true for pasta's network as a second one",
			e.Why, socket, socket, chained)
	}
	// A front end whose networks are always the plugin's own pasta.
	return e.Why + "; a passt-portmap network makes the container's network itself, with its own pasta, and cannot be added to a container that already has one: connect the container to this network alone"
}

// CheckError is Check's finding: owned rules missing or not listening,
// a managed forwarder not running, mappings not set up.
type CheckError struct {
	Socket  string
	Reasons []string
}

func (e *CheckError) Error() string {
	return "forwarder at " + e.Socket + ": " + strings.Join(e.Reasons, "; ")
}

// StatusError is a Status failure: not ready, and why.
type StatusError struct{ Err error }

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// annotated adds a note to the details of an error's description: Note,
// or the mappings that rules were made from (From), named as the front
// end's input names them.
type annotated struct {
	Err  error
	Note string
	From []ruleFrom
}

// ruleFrom is a rule and the indexes of the mappings it was made from.
type ruleFrom struct {
	Rule    wire.PifRule
	Entries []int
}

func (e *annotated) Error() string { return e.Err.Error() + " (" + e.note(neutral{}) + ")" }
func (e *annotated) Unwrap() error { return e.Err }

func (e *annotated) note(d Dialect) string {
	if len(e.From) == 0 {
		return e.Note
	}
	var parts []string
	for _, f := range e.From {
		parts = append(parts, fmt.Sprintf("%s from %s %s", f.Rule, d.Mappings(), entryNames(f.Entries)))
	}
	return strings.Join(parts, "; ")
}

// Describe puts any error of the core (or of a front end's configuration)
// into words, once for every front end: d names settings and mappings as
// the front end's input does (nil: the core's own names). nil describes
// nil.
func Describe(err error, d Dialect) *Error {
	if err == nil {
		return nil
	}
	if d == nil {
		d = neutral{}
	}
	socket := ""
	if se := (*socketErr)(nil); errors.As(err, &se) {
		socket = se.Socket
	}
	return describe(err, socket, d)
}

func describe(err error, socket string, d Dialect) *Error {
	if an := (*annotated)(nil); errors.As(err, &an) {
		e := describe(an.Err, socket, d)
		e.Details += "; " + an.note(d)
		return e
	}
	at := ""
	if socket != "" {
		at = "forwarder at " + socket + ": "
	}
	// In this order: what the call got wrong, what the forwarder said,
	// what the files said.
	if e := describeCall(err, d); e != nil {
		return e
	}
	for _, f := range []func(error, string, Dialect) *Error{describeForwarder, describeFiles} {
		if e := f(err, at, d); e != nil {
			return e
		}
	}
	return outcome(err, KindUnknown, "passt-portmap failed", at+err.Error())
}

func outcome(err error, k Kind, msg, details string) *Error {
	return &Error{Kind: k, Msg: msg, Details: details, Err: err}
}

// describeCall describes the errors of the call itself: its configuration,
// mappings and the calls it makes up.
func describeCall(err error, d Dialect) *Error {
	var (
		we  *waitedError
		ae  *Error
		gce *GCError
		ste *StatusError
		ce  *ConfigError
		ke  *store.KeyError
		sne *SecondNetworkError
		me  *MappingError
		tme *translate.MappingError
		re  *podman.ReservationError
	)
	switch {
	case errors.As(err, &we):
		return we.named(d)
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &gce) && len(gce.Failed) > 0:
		first := Describe(gce.Failed[0], d)
		var msgs []string
		for _, f := range gce.Failed {
			msgs = append(msgs, Describe(f, d).Error())
		}
		return outcome(err, first.Kind, fmt.Sprintf("GC could not release %d stale attachment(s)", len(gce.Failed)), strings.Join(msgs, " | "))
	case errors.As(err, &ste):
		if errors.As(ste.Err, &ce) {
			return outcome(err, KindNotAvailable, "passt-portmap is not ready", ce.named(d))
		}
		return outcome(err, KindNotAvailable, "passt-portmap is not ready", ste.Error())
	case errors.As(err, &ce):
		return outcome(err, KindBadConfig, "bad passt-portmap configuration", ce.named(d))
	case errors.As(err, &me):
		return outcome(err, KindBadConfig, "bad port mapping", me.named(d))
	case errors.As(err, &tme):
		return outcome(err, KindBadConfig, "bad port mapping", translated(tme, d))
	case errors.As(err, &ke):
		return outcome(err, KindBadConfig, "the runtime named no attachment", ke.Error())
	case errors.As(err, &sne):
		return outcome(err, KindBadConfig, "a managed forwarder would be a second network in this namespace", sne.advice(d))
	case errors.As(err, &re):
		// The runtime's own configuration is in the way.
		return outcome(err, KindBadConfig, re.Msg(), re.Details())
	}
	return nil
}

// translated names what translate refused, once the mappings passed
// CheckMappings: what depends on the options (a hostIP of another family
// than the target address), named by the mapping's field, or the option.
func translated(e *translate.MappingError, d Dialect) string {
	if e.Index < 0 {
		s := SettingTargetAddress
		if errors.Is(e.Err, translate.ErrInterface) {
			s = SettingBindInterface
		}
		return settingPhrase(d, s) + ": " + e.Err.Error()
	}
	f := FieldNone
	switch {
	case errors.Is(e.Err, translate.ErrFamily), errors.Is(e.Err, translate.ErrAddress):
		f = FieldHostIP
	case errors.Is(e.Err, translate.ErrProtocol):
		f = FieldProtocol
	}
	return d.Locate(d.Mapping(e.Index, f)) + ": " + e.Err.Error()
}

// describeForwarder describes what the forwarder answered, or did not.
func describeForwarder(err error, at string, d Dialect) *Error {
	var (
		mm  *wire.MismatchError
		se  *ctlclient.StatusError
		ue  *ctlclient.UnreachableError
		de  *wire.DecodeError
		mxe *ctlclient.MixedError
		tbe *translate.TableError
		ke  *CheckError
		ofe *ctlclient.OtherForwarderError
	)
	switch {
	case errors.As(err, &mm):
		return outcome(err, KindMismatch, "forwarder speaks an unsupported control protocol", at+mm.Error())
	case errors.As(err, &se):
		return describeStatus(se, err)
	case errors.As(err, &ue):
		return outcome(err, KindUnreachable, "forwarder unreachable or busy", fmt.Sprintf("socket %s: %v", ue.Path, ue.Err))
	case errors.As(err, &ofe):
		return outcome(err, KindUnreachable, "the forwarder was replaced during this call; nothing was sent to the new one", at+ofe.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return outcome(err, KindUnreachable, "forwarder busy past the timeout", at+err.Error())
	case errors.As(err, &de):
		return outcome(err, KindMismatch, "forwarder sent what this client cannot decode", fmt.Sprintf("%s%v; this client speaks control protocol versions %v", at, err, wire.SupportedVersions))
	case errors.As(err, &mxe):
		active := "unknown"
		if mxe.Result != nil {
			active = describeTables(mxe.Result.Tables)
		}
		return outcome(err, KindRollbackFail, "update only partly in effect, another client changed the same rules",
			fmt.Sprintf("%s; active now: %s", mxe.Error(), active))
	case errors.As(err, &tbe):
		// The planner refused before anything was sent: a safe fail.
		return outcome(err, KindSafeFail, "forwarder would reject the rules, nothing changed", at+tbe.In(d.Mappings()))
	case errors.As(err, &ke):
		return outcome(err, KindCheckFailed, "forwarded ports missing or not listening", ke.Error())
	}
	return nil
}

// describeFiles describes the errors of records, locks, directories and
// the managed forwarder's process.
func describeFiles(err error, at string, d Dialect) *Error {
	var (
		be  *store.BusyError
		fe  *forwarderError
		use *store.UnsafeError
		rde *recordDirError
		rse *recordSideError
		cre *store.CorruptError
		pe  *fs.PathError
	)
	switch {
	case errors.As(err, &be):
		return outcome(err, KindUnreachable, "another passt-portmap call holds this attachment", be.Error())
	case errors.As(err, &use):
		return outcome(err, KindIO, "passt-portmap refuses an unsafe path", err.Error())
	case errors.As(err, &fe):
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) && fe.Op == "start" {
			// The configured (or default) pasta is missing: Add checks
			// this first (findPasta), this is the same case found late.
			return outcome(err, KindBadConfig, "bad passt-portmap configuration: the pasta binary cannot be run", settingPhrase(d, SettingPasta)+": "+fe.Error())
		}
		return outcome(err, KindUnreachable, "managed forwarder failed", fe.Error())
	case errors.As(err, &rde):
		return outcome(err, KindIO, "ownership record names a directory that is not its own", rde.Error())
	case errors.As(err, &rse):
		return outcome(err, KindIO, "ownership record names a side interface the plugin would not set up", rse.Error())
	case errors.As(err, &cre) && cre.Version != 0:
		return outcome(err, KindIO, "ownership record of a newer passt-portmap", cre.Error()+
			"; nothing was changed: run the passt-portmap that wrote it, or remove this attachment's rules from the forwarder (passt-portmap show SOCKET lists them) and then the record and its .bak copy")
	case cre != nil:
		return outcome(err, KindIO, "ownership record unreadable", cre.Error()+
			"; nothing was changed: the rules it owned may still be in the forwarder; remove them there (passt-portmap show SOCKET lists them), then remove the record and its .bak copy")
	case errors.As(err, &pe):
		return outcome(err, KindIO, "passt-portmap could not use its files", at+err.Error())
	}
	return nil
}

func describeStatus(se *ctlclient.StatusError, err error) *Error {
	res := se.Result
	if res == nil {
		return &Error{Kind: KindUnknown, Msg: "forwarder update failed", Details: err.Error(), Err: err}
	}
	cause := ""
	if res.Cause != nil {
		cause = "; cause: " + res.Cause.Error()
	}
	e := &Error{Failed: res.Failed, Err: err}
	switch res.Status {
	case ctlclient.StatusSafeFail:
		e.Kind, e.Msg = KindSafeFail, "forwarder rejected the update, nothing changed"
		e.Details = fmt.Sprintf("forwarder at %s rejected %s%s", se.Path, describeEdits(res.Edits), cause)
	case ctlclient.StatusSocketFail:
		e.Kind, e.Msg = KindSocketFail, "host ports could not listen, update rolled back"
		if errors.Is(res.Cause, ctlclient.ErrNothingToUndo) {
			e.Msg = "host ports could not listen; the rules were in place already, nothing was changed"
		}
		e.Details = fmt.Sprintf("forwarder at %s: %s%s", se.Path, describeFailures(res.Failed), cause)
	case ctlclient.StatusRollbackFail:
		e.Kind, e.Msg = KindRollbackFail, "host ports could not listen and the rollback failed"
		e.Details = fmt.Sprintf("forwarder at %s: %s; active now: %s%s", se.Path, describeFailures(res.Failed), describeTables(res.Tables), cause)
	default:
		e.Kind, e.Msg, e.Details = KindUnknown, "forwarder update failed", err.Error()
	}
	return e
}

func describeEdits(es []wire.Edit) string {
	var parts []string
	for _, e := range es {
		for _, r := range e.Add {
			parts = append(parts, "add "+wire.PifRule{Pif: e.Pif, Rule: r}.String())
		}
		for _, r := range e.Remove {
			parts = append(parts, "remove "+wire.PifRule{Pif: e.Pif, Rule: r}.String())
		}
	}
	if len(parts) == 0 {
		return "an update with no edits"
	}
	return strings.Join(parts, ", ")
}

func describeFailures(fs []ctlclient.RuleFailure) string {
	if len(fs) == 0 {
		return "no failed rule reported"
	}
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%s: host ports %s not listening", f.PifRule, wire.PortList(f.Ports)))
	}
	return strings.Join(parts, "; ")
}

func describeTables(ts wire.Tables) string {
	if ts == nil {
		return "unknown (the tables could not be read back)"
	}
	var parts []string
	for _, t := range ts {
		var rs []string
		for _, r := range t.Rules {
			rs = append(rs, strings.TrimSpace(r.String()))
		}
		parts = append(parts, fmt.Sprintf("%s [%s]", t.Name(), strings.Join(rs, ", ")))
	}
	return strings.Join(parts, " ")
}
