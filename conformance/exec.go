package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Call is one plugin execution as libcni made it, with what the plugin
// printed: the checks judge plugins by their own bytes, not by what
// libcni made of them.
type Call struct {
	Plugin   string // the configuration's type
	Command  string // CNI_COMMAND
	Netns    string // CNI_NETNS
	Stdin    []byte
	Stdout   []byte
	Stderr   []byte
	ExitCode int // -1 when the plugin could not be run
}

// virtualPrefix marks the path of a plugin the recorder answers itself.
const virtualPrefix = "cniconform-virtual:"

// recorder is the invoke.Exec libcni runs plugins through. It runs them as
// invoke.RawExec does (environment, stdin, stdout) and keeps every call; it
// also answers for virtual plugins, whose ADD prints a fixed result (the
// previous result a chained plugin is given).
type recorder struct {
	mu      sync.Mutex
	calls   []Call
	virtual map[string][]byte // type -> ADD output
	sink    func(Call)        // sees every call, e.g. to collect errors
}

var _ invoke.Exec = (*recorder)(nil)

func (r *recorder) FindInPath(plugin string, paths []string) (string, error) {
	if _, ok := r.virtual[plugin]; ok {
		return virtualPrefix + plugin, nil
	}
	return invoke.FindInPath(plugin, paths)
}

func (r *recorder) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

func (r *recorder) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	c := Call{Stdin: append([]byte(nil), stdin...)}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "CNI_COMMAND":
			c.Command = v
		case "CNI_NETNS":
			c.Netns = v
		}
	}
	var conf struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(stdin, &conf)
	c.Plugin = conf.Type

	if name, ok := strings.CutPrefix(path, virtualPrefix); ok {
		c.Plugin = name
		if c.Command == "ADD" {
			c.Stdout = r.virtual[name]
		}
		r.keep(c)
		return c.Stdout, nil
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	c.Stdout, c.Stderr = stdout.Bytes(), stderr.Bytes()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		c.ExitCode = exitErr.ExitCode()
	default:
		c.ExitCode = -1
	}
	r.keep(c)
	if err == nil {
		return c.Stdout, nil
	}
	// As RawExec: the plugin's error structure when it printed one.
	var e types.Error
	if jerr := json.Unmarshal(c.Stdout, &e); jerr == nil && (e.Code != 0 || e.Msg != "") {
		return nil, &e
	}
	return nil, fmt.Errorf("plugin %s (%s) failed: %w; stdout %q, stderr %q",
		path, c.Command, err, clip(c.Stdout), clip(c.Stderr))
}

func (r *recorder) keep(c Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	sink := r.sink
	r.mu.Unlock()
	if sink != nil {
		sink(c)
	}
}

// Calls returns the calls made so far with the given command ("" for all).
func (r *recorder) Calls(command string) []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Call
	for _, c := range r.calls {
		if command == "" || c.Command == command {
			out = append(out, c)
		}
	}
	return out
}

// clip shortens plugin output for a one-line observation.
func clip(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
