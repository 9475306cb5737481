// Package conformance checks a CNI plugin (or a chain of plugins, given as
// a network configuration list) against the requirements of the CNI
// specification 1.1.0, one requirement per check, the way a runtime would
// meet them: through libcni, in fresh network namespaces, with real
// traffic on the host's loopback for plugins that map ports.
//
// A check passes, fails (with what was observed) or does not apply (with
// the reason). Checks are MUST (a failure is a violation and makes the
// command exit non-zero) or SHOULD (reported, not counted).
//
// The suite knows nothing about a particular plugin. What it cannot do
// generically it takes from its caller: a hook command that prepares each
// namespace for the plugin (e.g. starts a forwarder for it), tears it down,
// and removes the plugin's resources behind its back; and a configuration
// under which the plugin is not ready.
package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/version"
)

// Status is the outcome of one check.
type Status string

// The outcomes.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	NA   Status = "N/A"
)

// Result is one check's outcome for one CNI version.
type Result struct {
	Version     string // cniVersion the check ran with
	ID          string // short stable name, e.g. "del-twice"
	Section     string // where the spec says it, e.g. "§2 DEL"
	Requirement string
	Required    bool // MUST; false: SHOULD
	Status      Status
	Observed    string // what was seen; for N/A the reason
	Duration    time.Duration
}

// Suite is one run of the checks against one network configuration list.
type Suite struct {
	// PluginDirs is CNI_PATH: where the plugins are looked up.
	PluginDirs []string
	// Conflist is the network configuration list (JSON).
	Conflist []byte
	// UnreadyConflist, when set, is a configuration under which the
	// plugins cannot serve ADD: STATUS must then fail with 50 or 51.
	UnreadyConflist []byte
	// Versions are the cniVersions to run the checks with; empty means
	// those the configuration names (cniVersion and cniVersions).
	Versions []string
	// Hook, when set, is a shell command run with CONFORM_ACTION set to
	// "setup" after each namespace is made, "teardown" before it is
	// removed, and "remove" to remove the plugin's resources for an
	// attachment behind its back; CNI_CONTAINERID, CNI_NETNS and
	// CNI_IFNAME name the attachment.
	Hook string
	// IfName is CNI_IFNAME (default eth0).
	IfName string
	// Parallel is the number of containers of the parallel check (default 8).
	Parallel int
	// Timeout bounds each plugin call and hook (default 30s).
	Timeout time.Duration
	// Only, when set, names the checks to run (by ID); the others are
	// left out of the results.
	Only []string
	// Progress, when set, gets one line per finished check.
	Progress io.Writer
}

func (s *Suite) ifname() string {
	if s.IfName == "" {
		return "eth0"
	}
	return s.IfName
}

func (s *Suite) callTimeout() time.Duration {
	if s.Timeout <= 0 {
		return 30 * time.Second
	}
	return s.Timeout
}

func (s *Suite) parallel() int {
	if s.Parallel <= 0 {
		return 8
	}
	return s.Parallel
}

// Failed reports whether any required check failed.
func Failed(results []Result) bool {
	return slices.ContainsFunc(results, func(r Result) bool { return r.Required && r.Status == Fail })
}

// Run runs every check for every version and returns the results in
// order. The error is for what keeps the suite itself from running (a
// configuration that does not parse, no temporary directory).
func (s *Suite) Run(ctx context.Context) ([]Result, error) {
	base, err := libcni.ConfListFromBytes(s.Conflist)
	if err != nil {
		return nil, fmt.Errorf("network configuration list: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(s.Conflist, &raw); err != nil {
		return nil, fmt.Errorf("network configuration list: %w", err)
	}
	versions := s.Versions
	if len(versions) == 0 {
		versions = configVersions(raw, base.CNIVersion)
	}
	tmp, err := os.MkdirTemp("", "cniconform-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	var results []Result
	for _, v := range versions {
		r := &run{s: s, version: v, raw: raw, tmp: tmp}
		results = append(results, r.all(ctx)...)
	}
	return results, nil
}

// configVersions returns cniVersions and cniVersion, lowest first.
func configVersions(raw map[string]any, v string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if list, ok := raw["cniVersions"].([]any); ok {
		for _, x := range list {
			if s, ok := x.(string); ok {
				add(s)
			}
		}
	}
	add(v)
	slices.SortFunc(out, func(a, b string) int {
		if lt, err := version.GreaterThan(b, a); err == nil && lt {
			return -1
		}
		if a == b {
			return 0
		}
		return 1
	})
	return out
}

// atLeast reports whether version v is at least min.
func atLeast(v, min string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, min)
	return err == nil && ok
}

// errorLog collects every failed plugin call of a run for the check of
// error output.
type errorLog struct {
	mu    sync.Mutex
	calls []Call
}

func (l *errorLog) add(c Call) {
	if c.ExitCode == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *errorLog) all() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

var errNA = errors.New("not applicable")
