package conformance

import (
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"

	"github.com/containernetworking/cni/pkg/types/create"
)

// resultProblems checks an ADD result's bytes against §5 "ADD Success"
// for version want: the cniVersion, and the type and form of every
// documented field that is present. It returns a summary of the result
// and what is wrong with it.
func resultProblems(raw []byte, want string) (string, []string) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", []string{fmt.Sprintf("not a JSON object: %v (%q)", err, clip(raw))}
	}
	var probs []string
	bad := func(f string, a ...any) { probs = append(probs, fmt.Sprintf(f, a...)) }
	got, _ := m["cniVersion"].(string)
	if got != want {
		bad("cniVersion %q, requested %q", got, want)
	}
	if _, err := create.Create(want, raw); err != nil {
		bad("does not decode as a %s result: %v", want, err)
	}
	if !atLeast(want, "0.3.0") {
		return fmt.Sprintf("cniVersion %q", got), probs
	}
	ifaces, _ := list(m, "interfaces", bad)
	for i, x := range ifaces {
		o, ok := x.(map[string]any)
		if !ok {
			bad("interfaces[%d] is not an object", i)
			continue
		}
		if s, _ := o["name"].(string); s == "" {
			bad("interfaces[%d].name missing or not a string", i)
		}
		for _, k := range []string{"mac", "sandbox", "socketPath", "pciID"} {
			if v, ok := o[k]; ok {
				if _, ok := v.(string); !ok {
					bad("interfaces[%d].%s is not a string", i, k)
				}
			}
		}
		if v, ok := o["mtu"]; ok && !isUint(v) {
			bad("interfaces[%d].mtu is not an unsigned integer", i)
		}
	}
	ips, _ := list(m, "ips", bad)
	for i, x := range ips {
		o, ok := x.(map[string]any)
		if !ok {
			bad("ips[%d] is not an object", i)
			continue
		}
		if s, _ := o["address"].(string); !isCIDR(s) {
			bad("ips[%d].address %v is not an address in CIDR notation", i, o["address"])
		}
		if v, ok := o["gateway"]; ok {
			if s, _ := v.(string); net.ParseIP(s) == nil {
				bad("ips[%d].gateway %v is not an IP address", i, v)
			}
		}
		if v, ok := o["interface"]; ok {
			f, isNum := v.(float64)
			if !isUint(v) || !isNum || int(f) >= len(ifaces) {
				bad("ips[%d].interface %v is not an index into interfaces (%d)", i, v, len(ifaces))
			}
		}
	}
	routes, _ := list(m, "routes", bad)
	for i, x := range routes {
		o, ok := x.(map[string]any)
		if !ok {
			bad("routes[%d] is not an object", i)
			continue
		}
		if s, _ := o["dst"].(string); !isCIDR(s) {
			bad("routes[%d].dst %v is not in CIDR notation", i, o["dst"])
		}
		if v, ok := o["gw"]; ok {
			if s, _ := v.(string); net.ParseIP(s) == nil {
				bad("routes[%d].gw %v is not an IP address", i, v)
			}
		}
		for _, k := range []string{"mtu", "advmss", "priority", "table", "scope"} {
			if v, ok := o[k]; ok && !isUint(v) {
				bad("routes[%d].%s is not an unsigned integer", i, k)
			}
		}
	}
	if v, ok := m["dns"]; ok {
		o, ok := v.(map[string]any)
		if !ok {
			bad("dns is not an object")
		}
		if ns, ok := o["nameservers"]; ok {
			l, _ := ns.([]any)
			for _, x := range l {
				if s, _ := x.(string); net.ParseIP(s) == nil {
					bad("dns.nameservers entry %v is not an IP address", x)
				}
			}
		}
	}
	return fmt.Sprintf("cniVersion %q, %d interfaces, %d ips, %d routes", got, len(ifaces), len(ips), len(routes)), probs
}

func list(m map[string]any, key string, bad func(string, ...any)) ([]any, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, false
	}
	l, ok := v.([]any)
	if !ok {
		bad("%s is not a list", key)
	}
	return l, ok
}

func isUint(v any) bool {
	f, ok := v.(float64)
	return ok && f >= 0 && f == float64(uint64(f))
}

func isCIDR(s string) bool {
	_, _, err := net.ParseCIDR(s)
	return err == nil
}

// passThrough compares a chained plugin's output with the prevResult it
// was given: "" and a description when it kept every interface, IP,
// route and the DNS of prevResult (unchanged or extended), else what it
// lost.
func passThrough(prev, out []byte) (string, string) {
	var p, o map[string]any
	if err := json.Unmarshal(prev, &p); err != nil {
		return "", fmt.Sprintf("prevResult given is not JSON: %v", err)
	}
	if err := json.Unmarshal(out, &o); err != nil {
		return "", fmt.Sprintf("output %q is not a JSON object: %v", clip(out), err)
	}
	if reflect.DeepEqual(p, o) {
		return "output equals prevResult", ""
	}
	var lost []string
	for _, k := range []string{"interfaces", "ips", "routes"} {
		pl, _ := p[k].([]any)
		ol, _ := o[k].([]any)
		for i, x := range pl {
			if !containsDeep(ol, x) {
				lost = append(lost, fmt.Sprintf("%s[%d] %s", k, i, compact(x)))
			}
		}
	}
	if d, ok := p["dns"]; ok && !reflect.DeepEqual(d, o["dns"]) {
		lost = append(lost, "dns "+compact(d))
	}
	if p["cniVersion"] != o["cniVersion"] {
		lost = append(lost, fmt.Sprintf("cniVersion %v became %v", p["cniVersion"], o["cniVersion"]))
	}
	if len(lost) > 0 {
		return "", "output lost " + strings.Join(lost, ", ") + "; output " + clip(out)
	}
	return "output extends prevResult: " + clip(out), ""
}

func containsDeep(l []any, x any) bool {
	for _, y := range l {
		if reflect.DeepEqual(x, y) {
			return true
		}
	}
	return false
}

func compact(x any) string {
	b, _ := json.Marshal(x)
	return clip(b)
}

// errorProblems checks a failed call's output against §5 "Error".
func errorProblems(c Call) (int, []string) {
	var m map[string]any
	if err := json.Unmarshal(c.Stdout, &m); err != nil {
		return 0, []string{fmt.Sprintf("stdout is not a JSON error structure: %q (stderr %q)", clip(c.Stdout), clip(c.Stderr))}
	}
	var probs []string
	code := -1
	if v, ok := m["code"]; !ok || !isUint(v) {
		probs = append(probs, fmt.Sprintf("code %v missing or not a number", v))
	} else {
		code = int(v.(float64))
		if !knownCode(code) {
			probs = append(probs, fmt.Sprintf("code %d is reserved by the spec (0-99) but not defined in its table", code))
		}
	}
	if s, ok := m["msg"].(string); !ok || s == "" {
		probs = append(probs, "msg missing or empty")
	}
	if v, ok := m["details"]; ok {
		if _, ok := v.(string); !ok {
			probs = append(probs, "details is not a string")
		}
	}
	return code, probs
}

// knownCode: the codes of the spec's table, and 100 and above.
func knownCode(c int) bool {
	switch c {
	case 1, 2, 3, 4, 5, 6, 7, 11, 50, 51:
		return true
	}
	return c >= 100
}

func jsonObject(b []byte) bool {
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && m != nil
}
