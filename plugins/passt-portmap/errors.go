package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// The plugin's CNI error codes (issue 4; documented in the README). 7, 11
// and 50 are the CNI specification's own.
const (
	CodeBadConfig     uint = types.ErrInvalidNetworkConfig // 7: bad configuration or mappings
	CodeUnreachable   uint = types.ErrTryAgainLater        // 11: forwarder unreachable or busy past the timeout
	CodeNotAvailable  uint = types.ErrPluginNotAvailable   // 50: STATUS only: not ready
	CodeSafeFail      uint = 100                           // rejected, nothing changed
	CodeSocketFail    uint = 101                           // ports could not listen, rolled back
	CodeRollbackFail  uint = 102                           // rollback failed, state unknown
	CodeMismatch      uint = 103                           // protocol mismatch
	CodeCheckFailed   uint = 104                           // CHECK: owned rules missing or not listening
	CodeUnknownFailed uint = types.ErrInternal             // 999: only for what cannot be named
)

// checkError is CHECK's finding: owned rules missing or not listening.
type checkError struct {
	Socket  string
	Reasons []string
}

func (e *checkError) Error() string {
	return "forwarder at " + e.Socket + ": " + strings.Join(e.Reasons, "; ")
}

// statusError is a STATUS failure (code 50).
type statusError struct{ Err error }

func (e *statusError) Error() string { return e.Err.Error() }
func (e *statusError) Unwrap() error { return e.Err }

// annotated adds a note to the details of an error's CNI form.
type annotated struct {
	Err  error
	Note string
}

func (e *annotated) Error() string { return e.Err.Error() + " (" + e.Note + ")" }
func (e *annotated) Unwrap() error { return e.Err }

// toCNI maps any error of a verb onto a CNI error with one of the codes
// above. socket is the control socket the verb used ("" if none yet).
func toCNI(err error, socket string) *types.Error {
	if err == nil {
		return nil
	}
	if an := (*annotated)(nil); errors.As(err, &an) {
		e := toCNI(an.Err, socket)
		return types.NewError(e.Code, e.Msg, e.Details+"; "+an.Note)
	}
	var (
		te  *types.Error
		ce  *ConfigError
		me  *translate.MappingError
		tbe *translate.TableError
		mm  *wire.MismatchError
		de  *wire.DecodeError
		se  *ctlclient.StatusError
		mxe *ctlclient.MixedError
		ue  *ctlclient.UnreachableError
		ke  *checkError
		ste *statusError
		be  *store.BusyError
		mee *MissingEnvError
		fe  *forwarderError
		cre *store.CorruptError
		use *store.UnsafeError
		rde *recordDirError
	)
	at := ""
	if socket != "" {
		at = "forwarder at " + socket + ": "
	}
	switch {
	case errors.As(err, &te):
		return te
	case errors.As(err, &ste):
		return types.NewError(CodeNotAvailable, "passt-portmap is not ready", ste.Error())
	case errors.As(err, &ce), errors.As(err, &mee):
		return types.NewError(CodeBadConfig, "bad passt-portmap configuration", err.Error())
	case errors.As(err, &me):
		return types.NewError(CodeBadConfig, "bad port mapping", me.Error())
	case errors.As(err, &mm):
		return types.NewError(CodeMismatch, "forwarder speaks an unsupported control protocol", at+mm.Error())
	case errors.As(err, &se):
		return statusToCNI(se, err)
	case errors.As(err, &ue):
		return types.NewError(CodeUnreachable, "forwarder unreachable or busy", fmt.Sprintf("socket %s: %v", ue.Path, ue.Err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return types.NewError(CodeUnreachable, "forwarder busy past the timeout", at+err.Error())
	case errors.As(err, &de):
		return types.NewError(CodeMismatch, "forwarder sent what this client cannot decode", fmt.Sprintf("%s%v; this client speaks control protocol versions %v", at, err, wire.SupportedVersions))
	case errors.As(err, &mxe):
		active := "unknown"
		if mxe.Result != nil {
			active = describeTables(mxe.Result.Tables)
		}
		return types.NewError(CodeRollbackFail, "update only partly in effect, another client changed the same rules",
			fmt.Sprintf("%s; active now: %s", mxe.Error(), active))
	case errors.As(err, &tbe):
		// The planner refused before anything was sent: a safe fail.
		return types.NewError(CodeSafeFail, "forwarder would reject the rules, nothing changed", at+tbe.Error())
	case errors.As(err, &ke):
		return types.NewError(CodeCheckFailed, "forwarded ports missing or not listening", ke.Error())
	case errors.As(err, &be):
		return types.NewError(CodeUnreachable, "another passt-portmap call holds this attachment", be.Error())
	case errors.As(err, &fe):
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) && fe.Op == "start" {
			// The configured (or default) pasta is missing: ADD checks
			// this first (findPasta), this is the same case found late.
			return types.NewError(CodeBadConfig, "bad passt-portmap configuration: the pasta binary cannot be run", "configuration key pasta: "+fe.Error())
		}
		return types.NewError(CodeUnreachable, "managed forwarder failed", fe.Error())
	case errors.As(err, &use):
		return types.NewError(types.ErrIOFailure, "passt-portmap refuses an unsafe path", err.Error())
	case errors.As(err, &rde):
		return types.NewError(types.ErrIOFailure, "ownership record names a directory that is not its own", rde.Error())
	case errors.As(err, &cre):
		if cre.Version != 0 {
			return types.NewError(types.ErrIOFailure, "ownership record of a newer passt-portmap", cre.Error()+
				"; nothing was changed: run the passt-portmap that wrote it, or remove this attachment's rules from the forwarder (passt-portmap show SOCKET lists them) and then the record and its .bak copy")
		}
		return types.NewError(types.ErrIOFailure, "ownership record unreadable", cre.Error()+
			"; nothing was changed: the rules it owned may still be in the forwarder; remove them there (passt-portmap show SOCKET lists them), then remove the record and its .bak copy")
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return types.NewError(types.ErrIOFailure, "passt-portmap could not use its files", at+err.Error())
	}
	return types.NewError(CodeUnknownFailed, "passt-portmap failed", at+err.Error())
}

func statusToCNI(se *ctlclient.StatusError, err error) *types.Error {
	res := se.Result
	if res == nil {
		return types.NewError(CodeUnknownFailed, "forwarder update failed", err.Error())
	}
	cause := ""
	if res.Cause != nil {
		cause = "; cause: " + res.Cause.Error()
	}
	switch res.Status {
	case ctlclient.StatusSafeFail:
		// Name the entry when the cause is a table error.
		return types.NewError(CodeSafeFail, "forwarder rejected the update, nothing changed",
			fmt.Sprintf("forwarder at %s rejected %s%s", se.Path, describeEdits(res.Edits), cause))
	case ctlclient.StatusSocketFail:
		msg := "host ports could not listen, update rolled back"
		if errors.Is(res.Cause, ctlclient.ErrNothingToUndo) {
			msg = "host ports could not listen; the rules were in place already, nothing was changed"
		}
		return types.NewError(CodeSocketFail, msg,
			fmt.Sprintf("forwarder at %s: %s%s", se.Path, describeFailures(res.Failed), cause))
	case ctlclient.StatusRollbackFail:
		return types.NewError(CodeRollbackFail, "host ports could not listen and the rollback failed",
			fmt.Sprintf("forwarder at %s: %s; active now: %s%s", se.Path, describeFailures(res.Failed), describeTables(res.Tables), cause))
	}
	return types.NewError(CodeUnknownFailed, "forwarder update failed", err.Error())
}

// ruleText is a rule in pesto's notation, prefixed with its pif.
func ruleText(pif string, r wire.Rule) string {
	return pif + " " + strings.TrimSpace(r.String())
}

func describeEdits(es []wire.Edit) string {
	var parts []string
	for _, e := range es {
		for _, r := range e.Add {
			parts = append(parts, "add "+ruleText(e.Pif, r))
		}
		for _, r := range e.Remove {
			parts = append(parts, "remove "+ruleText(e.Pif, r))
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
		parts = append(parts, fmt.Sprintf("%s: host ports %s not listening", ruleText(f.Pif, f.Rule), portList(f.Ports)))
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

// portList renders ports as "8080, 9000-9003".
func portList(ps []uint16) string {
	if len(ps) == 0 {
		return "(none named)"
	}
	var parts []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(int(ps[i])))
		} else {
			parts = append(parts, strconv.Itoa(int(ps[i]))+"-"+strconv.Itoa(int(ps[j])))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
