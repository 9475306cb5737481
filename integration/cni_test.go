// Package integration holds end-to-end tests: the passt-portmap binary
// driven through libcni, as containerd and Podman drive it, against the
// real pasta (package pastatest), with real traffic on the host's loopback.
// They run as root; scripts/test.sh runs them.
package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// pluginDir holds the passt-portmap binary built by TestMain. It is set
// once before any test runs and only read afterwards.
var pluginDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "passt-portmap-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "passt-portmap"),
		"github.com/passt-portmap/passt-portmap/plugins/passt-portmap").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: building the plugin: %v\n%s", err, out)
		return 1
	}
	pluginDir = dir
	return m.Run()
}

// callTimeout bounds one plugin call made by a test.
const callTimeout = 30 * time.Second

// network is one CNI network (a conflist with the plugin alone) and the
// libcni that runs it.
type network struct {
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
	f        *pastatest.Forwarder
	cacheDir string
	dataDir  string
}

// newNetwork writes a conflist for the plugin with the forwarder's control
// socket and PID file, a data directory of the test's own and the
// portMappings capability, plus extra plugin keys.
func newNetwork(t *testing.T, f *pastatest.Forwarder, extra map[string]any) *network {
	t.Helper()
	n := &network{f: f, cacheDir: t.TempDir(), dataDir: t.TempDir()}
	plugin := map[string]any{
		"type":         "passt-portmap",
		"socket":       f.Socket,
		"pidFile":      f.PIDFile,
		"dataDir":      n.dataDir,
		"capabilities": map[string]bool{"portMappings": true},
	}
	for k, v := range extra {
		if v == nil {
			delete(plugin, k)
			continue
		}
		plugin[k] = v
	}
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "pt-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())),
		"plugins":    []any{plugin},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	n.list, err = libcni.NetworkConfFromBytes(b)
	if err != nil {
		t.Fatalf("conflist %s: %v", b, err)
	}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, n.cacheDir, nil)
	return n
}

// mapping is one entry of the portMappings capability.
type mapping struct {
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// setVersion rewrites the network's cniVersion.
func (n *network) setVersion(t *testing.T, v string) {
	t.Helper()
	var conf map[string]any
	if err := json.Unmarshal(n.list.Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	conf["cniVersion"] = v
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	if n.list, err = libcni.NetworkConfFromBytes(b); err != nil {
		t.Fatalf("conflist %s: %v", b, err)
	}
}

func (n *network) rt(id string, ms []mapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: n.f.NS.Path, IfName: "eth0"}
	if ms != nil {
		rt.CapabilityArgs = map[string]any{"portMappings": ms}
	}
	return rt
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

func (n *network) add(t *testing.T, id string, ms ...mapping) error {
	t.Helper()
	_, err := n.cni.AddNetworkList(ctx(t), n.list, n.rt(id, ms))
	return err
}

func (n *network) mustAdd(t *testing.T, id string, ms ...mapping) {
	t.Helper()
	if err := n.add(t, id, ms...); err != nil {
		t.Fatalf("ADD %s %+v: %v", id, ms, err)
	}
}

func (n *network) check(t *testing.T, id string, ms ...mapping) error {
	t.Helper()
	return n.cni.CheckNetworkList(ctx(t), n.list, n.rt(id, ms))
}

func (n *network) del(t *testing.T, id string, ms ...mapping) error {
	t.Helper()
	return n.cni.DelNetworkList(ctx(t), n.list, n.rt(id, ms))
}

func (n *network) mustDel(t *testing.T, id string, ms ...mapping) {
	t.Helper()
	if err := n.del(t, id, ms...); err != nil {
		t.Fatalf("DEL %s: %v", id, err)
	}
}

// cniCode returns the CNI error code carried by err, failing the test if
// err is nil or carries none.
func cniCode(t *testing.T, err error) uint {
	t.Helper()
	if err == nil {
		t.Fatal("got success, want a CNI error")
	}
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %q (%T) carries no CNI error code", err, err)
	}
	return te.Code
}

// wantCode fails unless err is a CNI error with one of the codes.
func wantCode(t *testing.T, what string, err error, codes ...uint) *types.Error {
	t.Helper()
	got := cniCode(t, err)
	for _, c := range codes {
		if got == c {
			var te *types.Error
			errors.As(err, &te)
			t.Logf("%s: code %d: %s; %s", what, te.Code, te.Msg, te.Details)
			return te
		}
	}
	t.Fatalf("%s: code %d (%v), want one of %v", what, got, err, codes)
	return nil
}

// ruleKeys returns the rules of every table as "PIF: <56 bytes in hex>",
// in order: equal results mean the tables are equal byte for byte.
func ruleKeys(ts wire.Tables) []string {
	var out []string
	for _, tb := range ts {
		out = append(out, fmt.Sprintf("%s caps %#x:", tb.Name(), uint32(tb.Caps)))
		for _, r := range tb.Rules {
			k := r.Key()
			out = append(out, fmt.Sprintf("%s: %x", tb.Name(), k[:]))
		}
	}
	return out
}

// sameTables fails unless the forwarder's tables (pesto's printout and
// the raw rules) equal a snapshot taken before.
func sameTables(t *testing.T, what string, f *pastatest.Forwarder, pesto string, raw wire.Tables) {
	t.Helper()
	if got := f.Tables(t); got != pesto {
		t.Errorf("%s: pesto printout changed:\n--- before\n%s--- after\n%s", what, pesto, got)
	}
	a, b := ruleKeys(raw), ruleKeys(f.ReadTables(t))
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("%s: tables changed:\n--- before\n%s\n--- after\n%s", what,
			strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

// hostRules returns the forwarder's HOST table.
func hostRules(t *testing.T, f *pastatest.Forwarder) []wire.Rule {
	t.Helper()
	h := f.ReadTables(t).Lookup("HOST")
	if h == nil {
		t.Fatal("the forwarder has no HOST table")
	}
	return h.Rules
}
