package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// check is one requirement.
type check struct {
	id          string
	section     string
	requirement string
	required    bool
	minVersion  string // the version that defines it
	ports       bool   // only for lists that take portMappings
	fn          func(sc *scope) (Status, string)
}

// checks in the order they run. error-format runs last: it judges every
// error the other checks provoked too.
var checks = []check{
	{id: "version-output", section: "§2 VERSION, §5 Version", required: true,
		requirement: "VERSION prints a JSON object with supportedVersions", fn: (*scope).versionOutput},
	{id: "version-echo", section: "§5 Version", required: true,
		requirement: "VERSION's cniVersion is the one given on input", fn: (*scope).versionEcho},
	{id: "add-version", section: "§5 ADD Success", required: true,
		requirement: "ADD's result carries the requested cniVersion", fn: (*scope).addVersion},
	{id: "add-fields", section: "§5 ADD Success", required: true,
		requirement: "ADD's result has the documented fields with their types", fn: (*scope).addFields},
	{id: "prevresult", section: "§2 ADD, §5 ADD Success", required: true,
		requirement: "a chained plugin that changes nothing passes prevResult through", fn: (*scope).prevResult},
	{id: "runtime-config", section: "§3 Deriving runtimeConfig", required: true,
		requirement: "runtimeConfig carries only declared capabilities, and a plugin works without them", fn: (*scope).runtimeConfig},
	{id: "unknown-fields", section: "§1 Plugin configuration objects", required: false,
		requirement: "unknown fields in the configuration are accepted", fn: (*scope).unknownFields},
	{id: "traffic-ipv4", section: "CONVENTIONS portMappings", required: true, ports: true,
		requirement: "a mapped port on 127.0.0.1 answers after ADD and not after DEL", fn: func(sc *scope) (Status, string) { return sc.traffic("127.0.0.1") }},
	{id: "traffic-ipv6", section: "CONVENTIONS portMappings", required: true, ports: true,
		requirement: "a mapped port on ::1, when accepted, answers after ADD and not after DEL", fn: func(sc *scope) (Status, string) { return sc.traffic("::1") }},
	{id: "del-twice", section: "§2 DEL", required: true,
		requirement: "DEL succeeds twice", fn: (*scope).delTwice},
	{id: "del-no-prevresult", section: "§2 DEL", required: true,
		requirement: "DEL succeeds without prevResult", fn: (*scope).delNoPrev},
	{id: "del-netns-gone", section: "§2 DEL", required: true,
		requirement: "DEL succeeds when the namespace is gone", fn: (*scope).delNetnsGone},
	{id: "del-without-add", section: "§2 DEL, §3 Lifecycle", required: true,
		requirement: "DEL without a preceding ADD succeeds", fn: (*scope).delWithoutAdd},
	{id: "check-after-add", section: "§2 CHECK", required: true, minVersion: "0.4.0",
		requirement: "CHECK right after ADD succeeds", fn: (*scope).checkAfterAdd},
	{id: "check-removed", section: "§2 CHECK", required: false, minVersion: "0.4.0",
		requirement: "CHECK fails once the plugin's resources are removed behind its back", fn: (*scope).checkRemoved},
	{id: "check-interface", section: "§2 CHECK", required: false, minVersion: "0.4.0",
		requirement: "CHECK fails once an interface of the result is removed", fn: (*scope).checkInterface},
	{id: "disable-check", section: "§1 disableCheck, §3 Checking", required: true, minVersion: "0.4.0",
		requirement: "with disableCheck, CHECK is not run and ADD and DEL work without it", fn: (*scope).disableCheck},
	{id: "status-ready", section: "§2 STATUS", required: true, minVersion: "1.1.0",
		requirement: "STATUS exits 0 when ready", fn: (*scope).statusReady},
	{id: "status-unready", section: "§2 STATUS", required: true, minVersion: "1.1.0",
		requirement: "STATUS fails with 50 or 51 when not ready", fn: (*scope).statusUnready},
	{id: "gc-removes", section: "§2 GC", required: true, minVersion: "1.1.0", ports: true,
		requirement: "GC removes attachments absent from cni.dev/valid-attachments", fn: (*scope).gcRemoves},
	{id: "gc-keeps", section: "§2 GC", required: true, minVersion: "1.1.0",
		requirement: "GC keeps the attachments in cni.dev/valid-attachments", fn: (*scope).gcKeeps},
	{id: "parallel", section: "§3 Lifecycle", required: true,
		requirement: "parallel ADDs and DELs on distinct containers all succeed and leave no state", fn: (*scope).parallel},
	{id: "error-format", section: "§2 Errors, §5 Error", required: false,
		requirement: "errors are JSON with code, msg, details and codes from the spec's table", fn: (*scope).errorFormat},
	{id: "error-version", section: "§5 Error", required: false,
		requirement: "an unsupported cniVersion is refused with code 1", fn: (*scope).errorVersion},
}

func pass(f string, a ...any) (Status, string) { return Pass, fmt.Sprintf(f, a...) }
func fail(f string, a ...any) (Status, string) { return Fail, fmt.Sprintf(f, a...) }
func na(f string, a ...any) (Status, string)   { return NA, fmt.Sprintf(f, a...) }

// all runs every check for the run's version.
func (r *run) all(ctx context.Context) []Result {
	list, err := r.listWith(nil)
	var plugins []map[string]any
	if err == nil {
		_, _ = r.listWith(func(_ map[string]any, ps []map[string]any) { plugins = ps })
	}
	for _, p := range plugins {
		if slices.Contains(capsOf(p), "portMappings") {
			r.ports = true
		}
	}
	r.plugins = plugins
	unsupported := ""
	if err == nil {
		unsupported = r.probeVersions(ctx, list)
	}
	var out []Result
	for _, c := range checks {
		if len(r.s.Only) > 0 && !slices.Contains(r.s.Only, c.id) {
			continue
		}
		res := Result{Version: r.version, ID: c.id, Section: c.section, Requirement: c.requirement, Required: c.required}
		switch {
		case err != nil:
			res.Status, res.Observed = Fail, err.Error()
		case c.minVersion != "" && !atLeast(r.version, c.minVersion):
			res.Status, res.Observed = na("the operation is defined from CNI %s", c.minVersion)
		case unsupported != "" && !strings.HasPrefix(c.id, "version-"):
			res.Status, res.Observed = na("%s", unsupported)
		case c.ports && !r.ports:
			res.Status, res.Observed = na("no plugin of the list declares the portMappings capability")
		default:
			sc := &scope{r: r, ctx: ctx}
			start := time.Now()
			res.Status, res.Observed = c.fn(sc)
			sc.close()
			res.Duration = time.Since(start)
		}
		if r.s.Progress != nil {
			fmt.Fprintf(r.s.Progress, "%s (%s)\n", Line(res), res.Duration.Round(time.Millisecond))
		}
		out = append(out, res)
	}
	return out
}

// probeVersions runs VERSION on every plugin type of the list with the
// run's version on input and keeps the answers; it returns why the run's
// version cannot be tested ("" when every plugin supports it).
func (r *run) probeVersions(ctx context.Context, list *libcni.NetworkConfigList) string {
	r.versionCalls = map[string]Call{}
	rec := &recorder{}
	var why []string
	for _, p := range list.Plugins {
		t := p.Network.Type
		if _, done := r.versionCalls[t]; done {
			continue
		}
		path, err := rec.FindInPath(t, r.s.PluginDirs)
		if err != nil {
			r.versionCalls[t] = Call{Plugin: t, ExitCode: -1, Stderr: []byte(err.Error())}
			why = append(why, fmt.Sprintf("%s: %v", t, err))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.s.callTimeout())
		stdin := fmt.Sprintf(`{"cniVersion":%q}`, r.version)
		_, _ = rec.ExecPlugin(cctx, path, []byte(stdin), []string{"CNI_COMMAND=VERSION", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"})
		cancel()
		calls := rec.Calls("VERSION")
		c := calls[len(calls)-1]
		c.Plugin = t
		r.versionCalls[t] = c
		info, err := rec.Decode(c.Stdout)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: VERSION unreadable: %v", t, err))
			continue
		}
		if !slices.Contains(info.SupportedVersions(), r.version) {
			why = append(why, fmt.Sprintf("%s does not support %s", t, r.version))
		}
	}
	return strings.Join(why, "; ")
}

func (sc *scope) types() []string {
	var out []string
	for _, p := range sc.r.plugins {
		if t := typeOf(p); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func (sc *scope) versionOutput() (Status, string) {
	var obs, probs []string
	for _, t := range sc.types() {
		c := sc.r.versionCalls[t]
		var v struct {
			Supported *[]string `json:"supportedVersions"`
		}
		if c.ExitCode != 0 {
			probs = append(probs, fmt.Sprintf("%s: VERSION exited %d: %s", t, c.ExitCode, one(c)))
			continue
		}
		if err := json.Unmarshal(c.Stdout, &v); err != nil {
			probs = append(probs, fmt.Sprintf("%s: not a JSON object: %q", t, clip(c.Stdout)))
			continue
		}
		if v.Supported == nil || len(*v.Supported) == 0 {
			probs = append(probs, fmt.Sprintf("%s: no supportedVersions: %s", t, clip(c.Stdout)))
			continue
		}
		for _, s := range *v.Supported {
			if !atLeast(s, "0.0.0") {
				probs = append(probs, fmt.Sprintf("%s: supportedVersions entry %q is not a version", t, s))
			}
		}
		obs = append(obs, fmt.Sprintf("%s supports %s", t, strings.Join(*v.Supported, ", ")))
	}
	if len(probs) > 0 {
		return fail("%s", strings.Join(probs, "; "))
	}
	return pass("%s", strings.Join(obs, "; "))
}

func (sc *scope) versionEcho() (Status, string) {
	var obs, probs []string
	for _, t := range sc.types() {
		c := sc.r.versionCalls[t]
		var v struct {
			CNIVersion string `json:"cniVersion"`
		}
		_ = json.Unmarshal(c.Stdout, &v)
		if v.CNIVersion != sc.r.version {
			probs = append(probs, fmt.Sprintf("%s: given %q, printed cniVersion %q", t, sc.r.version, v.CNIVersion))
			continue
		}
		obs = append(obs, fmt.Sprintf("%s printed %q", t, v.CNIVersion))
	}
	if len(probs) > 0 {
		return fail("%s", strings.Join(probs, "; "))
	}
	return pass("%s", strings.Join(obs, "; "))
}

// addOnce makes one attachment of the list as configured.
func (sc *scope) addOnce() (*att, *libcni.NetworkConfigList, error) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return nil, nil, err
	}
	a, err := sc.add(list, "127.0.0.1", nil)
	return a, list, err
}

func (sc *scope) addVersion() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	var obs, probs []string
	for _, c := range a.run.rec.Calls("ADD") {
		var v struct {
			CNIVersion string `json:"cniVersion"`
		}
		if err := json.Unmarshal(c.Stdout, &v); err != nil || v.CNIVersion != sc.r.version {
			probs = append(probs, fmt.Sprintf("%s printed cniVersion %q for %q: %s", c.Plugin, v.CNIVersion, sc.r.version, clip(c.Stdout)))
			continue
		}
		obs = append(obs, fmt.Sprintf("%s: %q", c.Plugin, v.CNIVersion))
	}
	if len(probs) > 0 {
		return fail("%s", strings.Join(probs, "; "))
	}
	return pass("%s", strings.Join(obs, "; "))
}

func (sc *scope) addFields() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	var obs, probs []string
	for _, c := range a.run.rec.Calls("ADD") {
		sum, p := resultProblems(c.Stdout, sc.r.version)
		for _, x := range p {
			probs = append(probs, c.Plugin+": "+x)
		}
		obs = append(obs, c.Plugin+": "+sum)
	}
	if len(probs) > 0 {
		return fail("%s", strings.Join(probs, "; "))
	}
	return pass("%s", strings.Join(obs, "; "))
}

// virtualPrev is the type of the in-suite plugin that precedes the first
// plugin to give it a previous result.
const virtualPrev = "cniconform-prev"

func (sc *scope) prevResult() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	var obs, probs []string
	calls := a.run.rec.Calls("ADD")
	// Plugins chained in the list as given.
	for i, c := range calls {
		if i == 0 {
			continue
		}
		var in struct {
			Prev json.RawMessage `json:"prevResult"`
		}
		_ = json.Unmarshal(c.Stdin, &in)
		got, bad := passThrough(in.Prev, c.Stdout)
		if bad != "" {
			probs = append(probs, c.Plugin+": "+bad)
		} else {
			obs = append(obs, c.Plugin+": "+got)
		}
	}
	// The first plugin, when its own result is empty (it changes nothing
	// a result reports), chained after a virtual one.
	if len(calls) > 0 {
		first := calls[0]
		var res map[string]any
		_ = json.Unmarshal(first.Stdout, &res)
		if res["interfaces"] != nil || res["ips"] != nil || !atLeast(sc.r.version, "0.3.0") {
			obs = append(obs, first.Plugin+" creates what its result reports: not a pass-through plugin")
		} else {
			st, o := sc.prevFirst(first.Plugin)
			if st == Fail {
				probs = append(probs, o)
			} else {
				obs = append(obs, o)
			}
		}
	}
	if len(probs) > 0 {
		return fail("%s", strings.Join(probs, "; "))
	}
	if len(obs) == 0 {
		return na("no plugin is chained")
	}
	return pass("%s", strings.Join(obs, "; "))
}

// prevFirst runs the list behind a virtual plugin whose result names an
// interface in the sandbox with a documentation address (RFC 5737), and
// compares the first plugin's output with it.
func (sc *scope) prevFirst(name string) (Status, string) {
	list, err := sc.r.listWith(func(l map[string]any, ps []map[string]any) {
		l["plugins"] = append([]any{map[string]any{"type": virtualPrev}}, l["plugins"].([]any)...)
	})
	if err != nil {
		return fail("%v", err)
	}
	sb, err := sc.sandbox()
	if err != nil {
		return fail("%v", err)
	}
	prev := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: sc.r.s.ifname(), Sandbox: sb.Path}},
		IPs:        []*current.IPConfig{{Interface: current.Int(0), Address: mustCIDR("192.0.2.10/24")}},
	}
	conv, err := prev.GetAsVersion(sc.r.version)
	if err != nil {
		return fail("previous result as %s: %v", sc.r.version, err)
	}
	b, err := json.Marshal(conv)
	if err != nil {
		return fail("previous result: %v", err)
	}
	rn, err := sc.runtime(map[string][]byte{virtualPrev: b})
	if err != nil {
		return fail("%v", err)
	}
	_, err = sc.addIn(sb, rn, list, "127.0.0.1", nil)
	calls := rn.rec.Calls("ADD")
	if len(calls) < 2 {
		return na("%s refuses to be chained: %v", name, err)
	}
	c := calls[1]
	if c.ExitCode != 0 {
		return na("%s refuses to be chained (exit %d): %s", name, c.ExitCode, one(c))
	}
	got, bad := passThrough(b, c.Stdout)
	if bad != "" {
		return fail("%s after a previous result: %s", name, bad)
	}
	return pass("%s after a previous result: %s", name, got)
}

func (sc *scope) runtimeConfig() (Status, string) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return fail("%v", err)
	}
	const undeclared = "cniconformUndeclared"
	a, err := sc.add(list, "127.0.0.1", map[string]any{undeclared: map[string]any{"x": 1}})
	if err != nil {
		return fail("%v", err)
	}
	var probs, obs, notes []string
	calls := a.run.rec.Calls("ADD")
	for i, c := range calls {
		var in map[string]any
		_ = json.Unmarshal(c.Stdin, &in)
		if _, ok := in["capabilities"]; ok && !slices.Contains(notes, "capabilities") {
			// §3 says the runtime must not set it; libcni does. The
			// runtime's deviation, not the plugin's.
			notes = append(notes, "capabilities")
			obs = append(obs, "libcni passed the capabilities key too (§3: must not be set; a runtime deviation)")
		}
		rc, _ := in["runtimeConfig"].(map[string]any)
		var keys []string
		for k := range rc {
			keys = append(keys, k)
			if i < len(sc.r.plugins) && !slices.Contains(capsOf(sc.r.plugins[i]), k) {
				probs = append(probs, fmt.Sprintf("%s was given undeclared capability %s", c.Plugin, k))
			}
		}
		sort.Strings(keys)
		obs = append(obs, fmt.Sprintf("%s got runtimeConfig %v", c.Plugin, keys))
	}
	// The plugins without any capability declared.
	bare, err := sc.r.listWith(func(_ map[string]any, ps []map[string]any) {
		for _, p := range ps {
			delete(p, "capabilities")
		}
	})
	if err != nil {
		return fail("%v", err)
	}
	b, err := sc.add(bare, "127.0.0.1", nil)
	if err != nil {
		probs = append(probs, fmt.Sprintf("without declared capabilities (no runtimeConfig): %v", err))
	} else {
		obs = append(obs, "without declared capabilities ADD succeeds")
		if sc.r.ports {
			if ok, what := b.answers(sc.ctx); ok {
				probs = append(probs, "without portMappings declared, the mapping given by the runtime was applied anyway: "+what)
			}
		}
		if err := b.del(sc.ctx); err != nil {
			probs = append(probs, fmt.Sprintf("without declared capabilities DEL: %v", err))
		}
	}
	if len(probs) > 0 {
		return fail("%s", strings.Join(probs, "; "))
	}
	return pass("%s", strings.Join(obs, "; "))
}

func (sc *scope) unknownFields() (Status, string) {
	const key = "cniconformUnknownField"
	list, err := sc.r.listWith(func(l map[string]any, ps []map[string]any) {
		l[key] = "list level"
		for _, p := range ps {
			p[key] = map[string]any{"nested": []any{1, "two", true}}
		}
	})
	if err != nil {
		return fail("%v", err)
	}
	a, err := sc.add(list, "127.0.0.1", nil)
	if err != nil {
		return fail("%s added to every plugin: %v", key, err)
	}
	for _, c := range a.run.rec.Calls("ADD") {
		if !strings.Contains(string(c.Stdin), key) {
			return fail("the runtime did not pass %s to %s", key, c.Plugin)
		}
	}
	// No CHECK here: a CHECK that fails anyway would be blamed on the
	// field (check-after-add judges CHECK).
	if err := a.del(sc.ctx); err != nil {
		return fail("DEL with %s: %v", key, err)
	}
	return pass("ADD and DEL succeed with %s in the list and every plugin", key)
}

func (sc *scope) traffic(hostIP string) (Status, string) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return fail("%v", err)
	}
	a, err := sc.add(list, hostIP, nil)
	if err != nil {
		if hostIP == "::1" {
			return na("the plugin does not accept hostIP ::1: %v", err)
		}
		return fail("%v", err)
	}
	ok, what := a.answers(sc.ctx)
	if !ok {
		return fail("after ADD %s", what)
	}
	if err := a.del(sc.ctx); err != nil {
		return fail("after ADD %s; DEL: %v", what, err)
	}
	ok, after := a.answers(sc.ctx)
	if ok {
		return fail("after ADD %s; after DEL still %s", what, after)
	}
	return pass("after ADD %s; after DEL %s", what, after)
}

func (sc *scope) delTwice() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	if err := a.del(sc.ctx); err != nil {
		return fail("first DEL: %v", err)
	}
	if err := a.del(sc.ctx); err != nil {
		return fail("second DEL: %v", err)
	}
	return pass("both DELs succeed")
}

func (sc *scope) delNoPrev() (Status, string) {
	a, list, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	// A runtime without the cached result: a fresh cache.
	rn, err := sc.runtime(nil)
	if err != nil {
		return fail("%v", err)
	}
	b := &att{sb: a.sb, rt: a.rt, list: list, run: rn, port: a.port, hostIP: a.hostIP}
	if err := b.del(sc.ctx); err != nil {
		return fail("DEL without prevResult: %v", err)
	}
	a.deleted = true
	for _, c := range rn.rec.Calls("DEL") {
		if strings.Contains(string(c.Stdin), `"prevResult"`) {
			return fail("the runtime passed a prevResult to %s", c.Plugin)
		}
	}
	obs := "DEL without prevResult succeeds"
	if sc.r.ports {
		ok, what := a.answers(sc.ctx)
		if ok {
			obs += "; the mapping stays (not required): " + what
		} else {
			obs += "; the mapping is gone: " + what
		}
	}
	return pass("%s", obs)
}

func (sc *scope) delNetnsGone() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	if err := a.sb.removeNS(); err != nil {
		return fail("%v", err)
	}
	if err := a.del(sc.ctx); err != nil {
		return fail("DEL after %s was removed: %v", a.sb.Path, err)
	}
	return pass("DEL succeeds after %s was removed", a.sb.Path)
}

func (sc *scope) delWithoutAdd() (Status, string) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return fail("%v", err)
	}
	sb, err := sc.sandbox()
	if err != nil {
		return fail("%v", err)
	}
	rn, err := sc.runtime(nil)
	if err != nil {
		return fail("%v", err)
	}
	a := &att{sb: sb, list: list, run: rn, rt: &libcni.RuntimeConf{ContainerID: sb.ID, NetNS: sb.Path, IfName: sc.r.s.ifname()}}
	if err := a.del(sc.ctx); err != nil {
		return fail("DEL of a container never added: %v", err)
	}
	return pass("DEL of a container never added succeeds")
}

func (sc *scope) checkAfterAdd() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	if err := a.check(sc.ctx); err != nil {
		return fail("CHECK right after ADD: %v", err)
	}
	return pass("CHECK right after ADD succeeds")
}

// removeBehind removes an attachment's resources through the hook and
// confirms it where the suite can see it (the mapped port).
func (sc *scope) removeBehind(a *att) (string, error) {
	if sc.r.s.Hook == "" {
		return "", fmt.Errorf("%w: no hook to remove the plugin's resources was given", errNA)
	}
	if err := sc.r.s.runHook(sc.ctx, "remove", a.sb); err != nil {
		return "", err
	}
	if !sc.r.ports {
		return "the hook removed the resources (not observable without portMappings)", nil
	}
	ok, what := a.answers(sc.ctx)
	if ok {
		return "", fmt.Errorf("%w: the hook's removal left the mapping answering: %s", errNA, what)
	}
	return "the hook removed the resources: " + what, nil
}

func (sc *scope) checkRemoved() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	if sc.r.ports {
		if ok, what := a.answers(sc.ctx); !ok {
			return fail("the mapping does not answer after ADD: %s", what)
		}
	}
	how, err := sc.removeBehind(a)
	if errors.Is(err, errNA) {
		return na("%v", err)
	}
	if err != nil {
		return fail("%v", err)
	}
	if err := a.check(sc.ctx); err != nil {
		return pass("%s; CHECK fails: %v", how, err)
	}
	return fail("%s; CHECK still succeeds", how)
}

func (sc *scope) checkInterface() (Status, string) {
	a, _, err := sc.addOnce()
	if err != nil {
		return fail("%v", err)
	}
	res, err := current.NewResultFromResult(a.result)
	if err != nil {
		return fail("result: %v", err)
	}
	var name string
	for _, i := range res.Interfaces {
		if i.Sandbox == a.sb.Path {
			name = i.Name
			break
		}
	}
	if name == "" {
		return na("the result names no interface in the container's namespace")
	}
	err = a.sb.netns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	if err != nil {
		return fail("removing %s in %s: %v", name, a.sb.Path, err)
	}
	if err := a.check(sc.ctx); err != nil {
		return pass("removed interface %s in the namespace; CHECK fails: %v", name, err)
	}
	return fail("removed interface %s in the namespace; CHECK still succeeds", name)
}

func (sc *scope) disableCheck() (Status, string) {
	list, err := sc.r.listWith(func(l map[string]any, _ []map[string]any) { l["disableCheck"] = true })
	if err != nil {
		return fail("%v", err)
	}
	a, err := sc.add(list, "127.0.0.1", nil)
	if err != nil {
		return fail("ADD with disableCheck: %v", err)
	}
	if err := a.check(sc.ctx); err != nil {
		return fail("CHECK with disableCheck: %v", err)
	}
	if n := len(a.run.rec.Calls("CHECK")); n > 0 {
		return fail("the runtime ran CHECK %d times despite disableCheck", n)
	}
	if err := a.del(sc.ctx); err != nil {
		return fail("DEL with disableCheck (no CHECK ran): %v", err)
	}
	return pass("CHECK returned success without running a plugin; ADD and DEL succeed")
}

func (sc *scope) statusReady() (Status, string) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return fail("%v", err)
	}
	rn, err := sc.runtime(nil)
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(sc.ctx, sc.r.s.callTimeout())
	defer cancel()
	err = rn.cni.GetStatusNetworkList(ctx, list)
	calls := rn.rec.Calls("STATUS")
	if err != nil {
		return fail("STATUS: %v", err)
	}
	if len(calls) != len(list.Plugins) {
		return fail("STATUS ran %d plugins of %d", len(calls), len(list.Plugins))
	}
	return pass("STATUS exits 0 for every plugin")
}

func (sc *scope) statusUnready() (Status, string) {
	if len(sc.r.s.UnreadyConflist) == 0 {
		return na("no configuration under which the plugin is not ready was given (--unready-conflist)")
	}
	var raw map[string]any
	if err := json.Unmarshal(sc.r.s.UnreadyConflist, &raw); err != nil {
		return fail("unready configuration: %v", err)
	}
	ur := &run{s: sc.r.s, version: sc.r.version, raw: raw, tmp: sc.r.tmp}
	list, err := ur.listWith(nil)
	if err != nil {
		return fail("%v", err)
	}
	rn, err := sc.runtime(nil)
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(sc.ctx, sc.r.s.callTimeout())
	defer cancel()
	err = rn.cni.GetStatusNetworkList(ctx, list)
	if err == nil {
		return fail("STATUS succeeds under the unready configuration")
	}
	calls := rn.rec.Calls("STATUS")
	c := calls[len(calls)-1]
	code, probs := errorProblems(c)
	if len(probs) > 0 {
		return fail("%s STATUS exit %d: %s", c.Plugin, c.ExitCode, strings.Join(probs, "; "))
	}
	if code != 50 && code != 51 {
		return fail("%s STATUS failed with code %d, not 50 or 51: %s", c.Plugin, code, one(c))
	}
	return pass("%s STATUS exit %d, code %d: %s", c.Plugin, c.ExitCode, code, one(c))
}

// gcPair adds two attachments and GCs with only the first valid, from a
// runtime without cached results (libcni would DEL the other itself).
func (sc *scope) gcPair() (keep, drop *att, err error) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return nil, nil, err
	}
	if keep, err = sc.add(list, "127.0.0.1", nil); err != nil {
		return nil, nil, err
	}
	if drop, err = sc.add(list, "127.0.0.1", nil); err != nil {
		return nil, nil, err
	}
	rn, err := sc.runtime(nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(sc.ctx, sc.r.s.callTimeout())
	defer cancel()
	args := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: keep.sb.ID, IfName: keep.rt.IfName}}}
	if err := rn.cni.GCNetworkList(ctx, list, args); err != nil {
		return nil, nil, fmt.Errorf("GC with %s valid: %w", keep.sb.ID, err)
	}
	if n := len(rn.rec.Calls("GC")); n != len(list.Plugins) {
		return nil, nil, fmt.Errorf("GC ran %d plugins of %d", n, len(list.Plugins))
	}
	return keep, drop, nil
}

func (sc *scope) gcRemoves() (Status, string) {
	keep, drop, err := sc.gcPair()
	if err != nil {
		return fail("%v", err)
	}
	_ = keep
	ok, what := drop.answers(sc.ctx)
	if ok {
		return fail("the attachment absent from the list still answers: %s", what)
	}
	return pass("the attachment absent from the list is gone: %s", what)
}

func (sc *scope) gcKeeps() (Status, string) {
	keep, _, err := sc.gcPair()
	if err != nil {
		return fail("%v", err)
	}
	var obs []string
	if sc.r.ports {
		ok, what := keep.answers(sc.ctx)
		if !ok {
			return fail("the valid attachment stopped answering: %s", what)
		}
		obs = append(obs, "the valid attachment answers: "+what)
	}
	if err := keep.check(sc.ctx); err != nil {
		return fail("%s; CHECK of the valid attachment fails: %v", strings.Join(obs, "; "), err)
	}
	obs = append(obs, "CHECK of the valid attachment succeeds")
	return pass("%s", strings.Join(obs, "; "))
}

func (sc *scope) parallel() (Status, string) {
	list, err := sc.r.listWith(nil)
	if err != nil {
		return fail("%v", err)
	}
	n := sc.r.s.parallel()
	sbs := make([]*sandbox, n)
	rns := make([]*runtime, n)
	for i := range n {
		if sbs[i], err = sc.sandbox(); err != nil {
			return fail("%v", err)
		}
		if rns[i], err = sc.runtime(nil); err != nil {
			return fail("%v", err)
		}
	}
	hostIfaces := func() map[string]bool {
		m := map[string]bool{}
		links, _ := netlink.LinkList()
		for _, l := range links {
			m[l.Attrs().Name] = true
		}
		return m
	}
	before := hostIfaces()
	atts := make([]*att, n)
	errs := make([]error, n)
	var mu sync.Mutex // sc.cleanups
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sub := &scope{r: sc.r, ctx: sc.ctx}
			a, err := sub.addIn(sbs[i], rns[i], list, "127.0.0.1", nil)
			atts[i], errs[i] = a, err
			mu.Lock()
			sc.cleanups = append(sc.cleanups, sub.cleanups...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail("%d parallel ADDs: %v", n, err)
	}
	if sc.r.ports {
		for _, a := range atts {
			if ok, what := a.answers(sc.ctx); !ok {
				return fail("after %d parallel ADDs %s", n, what)
			}
		}
	}
	for i := range n {
		wg.Go(func() { errs[i] = atts[i].del(sc.ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail("%d parallel DELs: %v", n, err)
	}
	var left []string
	if sc.r.ports {
		for _, a := range atts {
			if ok, what := a.answers(sc.ctx); ok {
				left = append(left, what)
			}
		}
	}
	for _, rn := range rns {
		if c, _ := rn.cni.GetCachedAttachments(""); len(c) > 0 {
			left = append(left, fmt.Sprintf("%d cached results", len(c)))
		}
	}
	after := hostIfaces()
	for name := range after {
		if !before[name] {
			left = append(left, "host interface "+name)
		}
	}
	if len(left) > 0 {
		return fail("%d parallel ADDs and DELs succeed but leave %s", n, strings.Join(left, ", "))
	}
	obs := fmt.Sprintf("%d parallel ADDs and %d DELs succeed; no host interface or cached result left", n, n)
	if sc.r.ports {
		obs += "; every container answered on its own port after ADD and none after DEL"
	}
	return pass("%s", obs)
}

func (sc *scope) errorFormat() (Status, string) {
	sc.provokeVersionError()
	calls := sc.r.errs.all()
	if len(calls) == 0 {
		return na("no plugin call failed")
	}
	codes := map[int]int{}
	noDetails := 0
	var probs []string
	for _, c := range calls {
		code, p := errorProblems(c)
		for _, x := range p {
			probs = append(probs, fmt.Sprintf("%s %s exit %d: %s", c.Plugin, c.Command, c.ExitCode, x))
		}
		if code >= 0 {
			codes[code]++
		}
		if !strings.Contains(string(c.Stdout), `"details"`) {
			noDetails++
		}
	}
	var cs []string
	for code, k := range codes {
		cs = append(cs, fmt.Sprintf("%d×%d", k, code))
	}
	sort.Strings(cs)
	if len(probs) > 0 {
		return fail("%d of %d errors: %s", len(probs), len(calls), strings.Join(probs, "; "))
	}
	return pass("%d errors, codes %s (count×code); %d without details", len(calls), strings.Join(cs, ", "), noDetails)
}

// provokeVersionError ADDs with a cniVersion no plugin supports; the
// failed call goes to the error log.
func (sc *scope) provokeVersionError() (Call, bool) {
	const v = "99.0.0"
	r := &run{s: sc.r.s, version: v, raw: sc.r.raw, tmp: sc.r.tmp}
	list, err := r.listWith(nil)
	if err != nil {
		return Call{}, false
	}
	a, _ := sc.add(list, "127.0.0.1", nil)
	if a == nil {
		return Call{}, false
	}
	a.deleted = true // a DEL with version 99.0.0 would only fail too
	for _, c := range a.run.rec.Calls("ADD") {
		if c.ExitCode != 0 {
			return c, true
		}
	}
	return Call{}, false
}

func (sc *scope) errorVersion() (Status, string) {
	c, ok := sc.provokeVersionError()
	if !ok {
		return fail("ADD with cniVersion 99.0.0 succeeds")
	}
	code, probs := errorProblems(c)
	if len(probs) > 0 {
		return fail("%s: %s", c.Plugin, strings.Join(probs, "; "))
	}
	if code != 1 {
		return fail("%s refused cniVersion 99.0.0 with code %d: %s", c.Plugin, code, one(c))
	}
	return pass("%s: %s", c.Plugin, one(c))
}
