package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// run is the checks of one cniVersion.
type run struct {
	s            *Suite
	version      string
	raw          map[string]any // the configuration list as given
	tmp          string
	errs         errorLog
	ports        bool // a plugin declares the portMappings capability
	plugins      []map[string]any
	versionCalls map[string]Call
}

// scope is one check's resources, released when the check ends: DELs of
// what it added that were not deleted, and its namespaces.
type scope struct {
	r        *run
	ctx      context.Context
	cleanups []func()
}

func (sc *scope) close() {
	for i := len(sc.cleanups) - 1; i >= 0; i-- {
		sc.cleanups[i]()
	}
}

// listWith returns the configuration list for this run's version after
// edit (which may be nil) changed a deep copy of it.
func (r *run) listWith(edit func(list map[string]any, plugins []map[string]any)) (*libcni.NetworkConfigList, error) {
	var list map[string]any
	b, err := json.Marshal(r.raw)
	if err != nil {
		return nil, fmt.Errorf("copy configuration: %w", err)
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("copy configuration: %w", err)
	}
	list["cniVersion"] = r.version
	delete(list, "cniVersions")
	var plugins []map[string]any
	if ps, ok := list["plugins"].([]any); ok {
		for _, p := range ps {
			if m, ok := p.(map[string]any); ok {
				plugins = append(plugins, m)
			}
		}
	}
	if edit != nil {
		edit(list, plugins)
	}
	b, err = json.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("configuration for %s: %w", r.version, err)
	}
	return l, nil
}

// runtime is a libcni runtime with its own result cache.
type runtime struct {
	cni *libcni.CNIConfig
	rec *recorder
}

func (sc *scope) runtime(virtual map[string][]byte) (*runtime, error) {
	dir, err := os.MkdirTemp(sc.r.tmp, "cache-")
	if err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	rec := &recorder{virtual: virtual, sink: sc.r.errs.add}
	return &runtime{cni: libcni.NewCNIConfigWithCacheDir(sc.r.s.PluginDirs, dir, rec), rec: rec}, nil
}

func (sc *scope) sandbox() (*sandbox, error) {
	sb, err := sc.r.s.newSandbox(sc.ctx)
	if err != nil {
		return nil, err
	}
	sc.cleanups = append(sc.cleanups, func() { sb.close(context.WithoutCancel(sc.ctx)) })
	return sb, nil
}

// att is one attachment made by a check.
type att struct {
	sb      *sandbox
	rt      *libcni.RuntimeConf
	list    *libcni.NetworkConfigList
	run     *runtime
	port    int    // mapped host port (0: no mapping)
	hostIP  string // its hostIP
	result  types.Result
	deleted bool
}

// add makes a sandbox and ADDs it through libcni with list, mapping a free
// host port on hostIP to the sandbox's server when the list takes port
// mappings. The attachment is DELeted when the check ends unless it was.
func (sc *scope) add(list *libcni.NetworkConfigList, hostIP string, caps map[string]any) (*att, error) {
	sb, err := sc.sandbox()
	if err != nil {
		return nil, err
	}
	rn, err := sc.runtime(nil)
	if err != nil {
		return nil, err
	}
	return sc.addIn(sb, rn, list, hostIP, caps)
}

func (sc *scope) addIn(sb *sandbox, rn *runtime, list *libcni.NetworkConfigList, hostIP string, caps map[string]any) (*att, error) {
	a := &att{sb: sb, list: list, run: rn, hostIP: hostIP}
	a.rt = &libcni.RuntimeConf{ContainerID: sb.ID, NetNS: sb.Path, IfName: sc.r.s.ifname(),
		CapabilityArgs: map[string]any{}}
	if sc.r.ports && hostIP != "" {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		a.port = p
		a.rt.CapabilityArgs["portMappings"] = []map[string]any{{
			"hostPort": p, "containerPort": ContainerPort, "protocol": "tcp", "hostIP": hostIP}}
	}
	for k, v := range caps {
		a.rt.CapabilityArgs[k] = v
	}
	sc.cleanups = append(sc.cleanups, func() {
		if !a.deleted {
			_ = a.del(context.WithoutCancel(sc.ctx))
		}
	})
	ctx, cancel := context.WithTimeout(sc.ctx, sc.r.s.callTimeout())
	defer cancel()
	res, err := rn.cni.AddNetworkList(ctx, list, a.rt)
	if err != nil {
		return a, fmt.Errorf("ADD %s: %w", sb.ID, err)
	}
	a.result = res
	return a, nil
}

func (a *att) del(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.sb.s.callTimeout())
	defer cancel()
	err := a.run.cni.DelNetworkList(ctx, a.list, a.rt)
	if err == nil {
		a.deleted = true
	}
	return err
}

func (a *att) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.sb.s.callTimeout())
	defer cancel()
	return a.run.cni.CheckNetworkList(ctx, a.list, a.rt)
}

// answers probes the mapped host port.
func (a *att) answers(ctx context.Context) (bool, string) {
	addr := hostPort(a.hostIP, a.port)
	ok, what := a.sb.probe(ctx, addr)
	return ok, addr + ": " + what
}

// capsOf returns the capabilities a plugin configuration declares.
func capsOf(p map[string]any) []string {
	m, _ := p["capabilities"].(map[string]any)
	var out []string
	for k, v := range m {
		if b, ok := v.(bool); ok && b {
			out = append(out, k)
		}
	}
	return out
}

func typeOf(p map[string]any) string {
	s, _ := p["type"].(string)
	return s
}

// one returns the single line of a plugin's output for an observation.
func one(c Call) string {
	s := clip(c.Stdout)
	if s == "" {
		s = clip(c.Stderr)
	}
	return strings.TrimSpace(s)
}

func mustCIDR(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return net.IPNet{}
	}
	n.IP = ip
	return *n
}
