package netavark

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// fieldErr is input that cannot be used, a configuration error whose key
// is its path into the JSON ("port_mappings[1].host_port",
// "network.options"), as the dialect's Locate takes it.
func fieldErr(field, format string, a ...any) error {
	return &attach.ConfigError{Key: field, Err: fmt.Errorf(format, a...)}
}

// obj is a JSON object's members by exact key (encoding/json would match
// struct fields ignoring case), with the object's path for errors.
type obj struct {
	path string
	m    map[string]json.RawMessage
}

func isNull(b json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }

// shown is a JSON value cut short for an error message.
func shown(b json.RawMessage) string {
	s := string(bytes.TrimSpace(b))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// object decodes b as an object at path; null is ok=false.
func object(path string, b json.RawMessage) (o obj, ok bool, err error) {
	if isNull(b) {
		return obj{}, false, nil
	}
	o.path = path
	if err := json.Unmarshal(b, &o.m); err != nil {
		return obj{}, false, fieldErr(path, "want an object, got %s", shown(b))
	}
	return o, true, nil
}

func (o obj) sub(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// get decodes member key into v. An absent or null member leaves v alone
// and is an error only when required. want describes v's JSON type.
func get[T any](o obj, key string, required bool, want string, v *T) (present bool, err error) {
	b, ok := o.m[key]
	if !ok || isNull(b) {
		if required {
			if ok {
				return false, fieldErr(o.sub(key), "is null, want %s", want)
			}
			return false, fieldErr(o.sub(key), "missing, want %s", want)
		}
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fieldErr(o.sub(key), "want %s, got %s", want, shown(b))
	}
	return true, nil
}

// member decodes an object member; an absent or null one is ok=false, or
// an error when required.
func (o obj) member(key string, required bool) (obj, bool, error) {
	b, ok := o.m[key]
	if !ok || isNull(b) {
		if required {
			return obj{}, false, fieldErr(o.sub(key), "missing, want an object")
		}
		return obj{}, false, nil
	}
	return object(o.sub(key), b)
}

// strings decodes a list of strings, naming a bad element by its index.
func (o obj) strings(key string) ([]string, error) {
	var raw []json.RawMessage
	if _, err := get(o, key, false, "a list of strings", &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, nil
	}
	out := make([]string, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &out[i]); err != nil || isNull(b) {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", o.sub(key), i), "want a string, got %s", shown(b))
		}
	}
	return out, nil
}

// stringMap decodes an object of strings (options), naming a bad value by
// its key; null is a nil map.
func (o obj) stringMap(key string) (map[string]string, error) {
	m, ok, err := o.member(key, false)
	if err != nil || !ok {
		return nil, err
	}
	out := make(map[string]string, len(m.m))
	for k, b := range m.m {
		var s string
		if err := json.Unmarshal(b, &s); err != nil || isNull(b) {
			return nil, fieldErr(m.sub(k), "want a string, got %s", shown(b))
		}
		out[k] = s
	}
	return out, nil
}

// topLevel decodes the whole input as one object; nothing may follow it.
func topLevel(what string, b []byte) (obj, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		return obj{}, fieldErr("stdin", "%s is not a JSON object: %w", what, err)
	}
	if m == nil {
		return obj{}, fieldErr("stdin", "%s is null, want a JSON object", what)
	}
	if _, err := dec.Token(); err != io.EOF {
		return obj{}, fieldErr("stdin", "%s: something follows the JSON object", what)
	}
	return obj{m: m}, nil
}

// DecodeExec decodes the input of setup and teardown. Fields that
// netavark always sends and the plugin needs (container_id, network with
// its name, network_options with interface_name) are required; optional
// ones may be absent or null. Unknown fields are ignored. Values are not
// read here: the core does (ParseOptions, attach.CheckMappings). Errors
// are *attach.ConfigError naming the field by its path.
func DecodeExec(b []byte) (*Exec, error) { return decodeExec(b, true) }

// decodeExec is DecodeExec, leaving port_mappings out unless withMappings.
func decodeExec(b []byte, withMappings bool) (*Exec, error) {
	top, err := topLevel("the plugin input", b)
	if err != nil {
		return nil, err
	}
	var e Exec
	if _, err := get(top, "container_id", true, "a string", &e.ContainerID); err != nil {
		return nil, err
	}
	if e.ContainerID == "" {
		return nil, fieldErr("container_id", "is empty")
	}
	if _, err := get(top, "container_name", false, "a string", &e.ContainerName); err != nil {
		return nil, err
	}
	if withMappings {
		if e.PortMappings, err = portMappings(top); err != nil {
			return nil, err
		}
	}
	nw, _, err := top.member("network", true)
	if err != nil {
		return nil, err
	}
	if e.Network, err = network(nw); err != nil {
		return nil, err
	}
	no, _, err := top.member("network_options", true)
	if err != nil {
		return nil, err
	}
	if e.NetworkOptions, err = perNetworkOptions(no); err != nil {
		return nil, err
	}
	return &e, nil
}

func portMappings(top obj) ([]PortMapping, error) {
	var raw []json.RawMessage
	if _, err := get(top, "port_mappings", false, "a list of objects", &raw); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, nil
	}
	out := make([]PortMapping, len(raw))
	for i, b := range raw {
		path := fmt.Sprintf("port_mappings[%d]", i)
		o, ok, err := object(path, b)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fieldErr(path, "is null, want an object")
		}
		pm := &out[i]
		if _, err := get(o, "container_port", true, "an integer", &pm.ContainerPort); err != nil {
			return nil, err
		}
		if _, err := get(o, "host_port", true, "an integer", &pm.HostPort); err != nil {
			return nil, err
		}
		if _, err := get(o, "host_ip", false, "a string", &pm.HostIP); err != nil {
			return nil, err
		}
		if _, err := get(o, "protocol", false, "a string", &pm.Protocol); err != nil {
			return nil, err
		}
		if _, err := get(o, "range", false, "an integer", &pm.Range); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// network decodes a network's configuration at o (setup's "network", or
// create's whole input).
func network(o obj) (Network, error) {
	var n Network
	for _, f := range []struct {
		key      string
		required bool
		v        *string
	}{{"name", true, &n.Name}, {"driver", false, &n.Driver}, {"id", false, &n.ID}} {
		if _, err := get(o, f.key, f.required, "a string", f.v); err != nil {
			return n, err
		}
	}
	if n.Name == "" {
		return n, fieldErr(o.sub("name"), "is empty")
	}
	for _, f := range []struct {
		key string
		v   *bool
	}{{"dns_enabled", &n.DNSEnabled}, {"internal", &n.Internal}, {"ipv6_enabled", &n.IPv6Enabled}} {
		if _, err := get(o, f.key, false, "true or false", f.v); err != nil {
			return n, err
		}
	}
	if _, err := get(o, "network_interface", false, "a string", &n.NetworkInterface); err != nil {
		return n, err
	}
	var err error
	if n.Options, err = o.stringMap("options"); err != nil {
		return n, err
	}
	if n.IPAMOptions, err = o.stringMap("ipam_options"); err != nil {
		return n, err
	}
	if n.NetworkDNSServers, err = o.strings("network_dns_servers"); err != nil {
		return n, err
	}
	var subnets []json.RawMessage
	if _, err := get(o, "subnets", false, "a list of objects", &subnets); err != nil {
		return n, err
	}
	for i, b := range subnets {
		so, ok, err := object(fmt.Sprintf("%s[%d]", o.sub("subnets"), i), b)
		if err != nil {
			return n, err
		}
		if !ok {
			return n, fieldErr(so.path, "is null, want an object")
		}
		var s Subnet
		if _, err := get(so, "subnet", true, "a string", &s.Subnet); err != nil {
			return n, err
		}
		if _, err := get(so, "gateway", false, "a string", &s.Gateway); err != nil {
			return n, err
		}
		if _, err := get(so, "lease_range", false, "an object", &s.LeaseRange); err != nil {
			return n, err
		}
		n.Subnets = append(n.Subnets, s)
	}
	if _, err := get(o, "routes", false, "a list of routes", &n.Routes); err != nil {
		return n, err
	}
	return n, nil
}

func perNetworkOptions(o obj) (PerNetworkOptions, error) {
	var p PerNetworkOptions
	if _, err := get(o, "interface_name", true, "a string", &p.InterfaceName); err != nil {
		return p, err
	}
	if p.InterfaceName == "" {
		return p, fieldErr(o.path+".interface_name", "is empty: the managed pasta needs the name of the interface to make in the namespace")
	}
	var err error
	if p.Aliases, err = o.strings("aliases"); err != nil {
		return p, err
	}
	if p.StaticIPs, err = o.strings("static_ips"); err != nil {
		return p, err
	}
	if _, err := get(o, "static_mac", false, "a string", &p.StaticMAC); err != nil {
		return p, err
	}
	if p.Options, err = o.stringMap("options"); err != nil {
		return p, err
	}
	return p, nil
}

// DecodeNetwork decodes create's input, a network's configuration as
// Podman writes it, and returns it with the object's members as they
// came, so that create can print it back unchanged but for what it
// changes.
func DecodeNetwork(b []byte) (Network, map[string]json.RawMessage, error) {
	top, err := topLevel("the network configuration", b)
	if err != nil {
		return Network{}, nil, err
	}
	n, err := network(top)
	return n, top.m, err
}
