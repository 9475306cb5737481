package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// Defaults of the optional configuration keys.
const (
	DefaultTimeout = 5 * time.Second
	DefaultDataDir = "/var/lib/cni/passt-portmap"
	// ArgSocket is the CNI_ARGS key that overrides "socket" for one call.
	ArgSocket = "PASST_SOCKET"
	// ForwarderManaged is the value of "forwarder" that makes the plugin
	// start pasta itself.
	ForwarderManaged = "managed"
)

// Placeholders expanded in "socket" and "pidFile".
const (
	PHContainerID = "${CNI_CONTAINERID}"
	PHIfName      = "${CNI_IFNAME}"
	PHNetns       = "${CNI_NETNS}" // the base name of CNI_NETNS
)

// Config is the plugin's parsed and validated configuration for one call.
// Parsing is pure: it reads the bytes and the call's environment and
// touches nothing.
type Config struct {
	CNIVersion string
	Network    string
	PrevResult types.Result // nil when alone in the list

	// Socket is the control socket template as configured (placeholders
	// unexpanded), or the CNI_ARGS override; empty in managed mode.
	Socket  string
	PIDFile string // template, like Socket
	// SocketFromArgs is true when CNI_ARGS PASST_SOCKET set Socket.
	SocketFromArgs bool

	Managed      bool
	Pasta        string
	PastaArgs    []string
	AllowChained bool

	Options  translate.Options // weak, targetAddress, bindInterface
	Timeout  time.Duration
	DataDir  string
	Verify   bool
	Mappings []translate.PortMapping

	ValidAttachments []types.GCAttachment
	// HasValidAttachments is true when the configuration carries the
	// list at all (GC refuses to guess without it).
	HasValidAttachments bool
}

// Env is what a call says about the attachment (from skel.CmdArgs).
type Env struct {
	ContainerID string
	IfName      string
	Netns       string
	Args        string // CNI_ARGS
}

// ConfigError is a bad configuration value; Key names it, with a path for
// nested keys (e.g. "runtimeConfig.portMappings[2].hostPort"). CNI code 7.
type ConfigError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string { return "configuration key " + e.Key + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func cfgErr(key, format string, a ...any) error {
	return &ConfigError{Key: key, Err: fmt.Errorf(format, a...)}
}

// decodeKey decodes raw[key] into v when present, naming the key (and the
// nested field) in the error.
func decodeKey(raw map[string]json.RawMessage, key string, v any) (bool, error) {
	b, ok := raw[key]
	if !ok || bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, typeErr(key, err)
	}
	return true, nil
}

func typeErr(key string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			key += "." + te.Field
		}
		return &ConfigError{Key: key, Err: fmt.Errorf("got a JSON %s, want %s", te.Value, jsonType(te.Type.String()))}
	}
	return &ConfigError{Key: key, Err: err}
}

func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map[") || strings.Contains(goType, "."):
		return "an object"
	}
	return goType
}

// ParseConfig parses the network configuration the runtime sent on stdin.
func ParseConfig(stdin []byte, env Env) (*Config, error) {
	sc, err := splitConfig(stdin)
	if err != nil {
		return nil, err
	}
	raw := sc.raw
	c := &Config{Timeout: DefaultTimeout, DataDir: DefaultDataDir, Verify: true}

	if _, err := decodeKey(raw, "cniVersion", &c.CNIVersion); err != nil {
		return nil, err
	}
	if _, err := decodeKey(raw, "name", &c.Network); err != nil {
		return nil, err
	}
	if c.Network == "" {
		return nil, cfgErr("name", "missing network name")
	}
	if c.CNIVersion == "" {
		c.CNIVersion = "0.1.0" // as libcni reads a configuration without one
	}
	if _, _, _, err := version.ParseVersion(c.CNIVersion); err != nil {
		return nil, cfgErr("cniVersion", "%v", err)
	}
	if _, ok := raw["prevResult"]; ok {
		pc, err := pluginConf(stdin, raw)
		if err != nil {
			return nil, typeErr("prevResult", err)
		}
		if pc.RawPrevResult != nil {
			if err := version.ParsePrevResult(&pc); err != nil {
				return nil, cfgErr("prevResult", "%v", err)
			}
			c.PrevResult = pc.PrevResult
		}
	}
	// GC's list; libcni also sends it as "cni.dev/attachments" (the name
	// an early spec used). Present but null is an empty list.
	for _, key := range []string{"cni.dev/valid-attachments", "cni.dev/attachments"} {
		if _, ok := raw[key]; ok && !c.HasValidAttachments {
			if _, err := decodeKey(raw, key, &c.ValidAttachments); err != nil {
				return nil, err
			}
			c.HasValidAttachments = true
		}
	}

	var fwd string
	if _, err := decodeKey(raw, "forwarder", &fwd); err != nil {
		return nil, err
	}
	hasSocket, err := decodeKey(raw, "socket", &c.Socket)
	if err != nil {
		return nil, err
	}
	switch fwd {
	case "":
		c.Managed = !hasSocket
	case ForwarderManaged:
		if hasSocket {
			return nil, cfgErr("socket", "cannot be combined with \"forwarder\": %q (a managed forwarder's socket is under dataDir)", ForwarderManaged)
		}
		c.Managed = true
	default:
		return nil, cfgErr("forwarder", "%q is not a forwarder mode: only %q is known (or leave it out and set \"socket\")", fwd, ForwarderManaged)
	}
	if hasSocket {
		if err := checkTemplate("socket", c.Socket); err != nil {
			return nil, err
		}
	}
	if _, err := decodeKey(raw, "pidFile", &c.PIDFile); err != nil {
		return nil, err
	}
	if c.PIDFile != "" {
		if c.Managed {
			return nil, cfgErr("pidFile", "is set by the plugin for a managed forwarder; leave it out")
		}
		if err := checkTemplate("pidFile", c.PIDFile); err != nil {
			return nil, err
		}
	}
	if s, ok := cniArg(env.Args, ArgSocket); ok {
		if err := checkTemplate("CNI_ARGS "+ArgSocket, s); err != nil {
			return nil, err
		}
		c.Socket, c.SocketFromArgs, c.Managed = s, true, false
	}

	if _, err := decodeKey(raw, "pasta", &c.Pasta); err != nil {
		return nil, err
	}
	if _, err := decodeKey(raw, "pastaArgs", &c.PastaArgs); err != nil {
		return nil, err
	}
	if _, err := decodeKey(raw, "allowChained", &c.AllowChained); err != nil {
		return nil, err
	}

	if _, err := decodeKey(raw, "weak", &c.Options.Weak); err != nil {
		return nil, err
	}
	var target string
	if _, err := decodeKey(raw, "targetAddress", &target); err != nil {
		return nil, err
	}
	if target != "" {
		a, err := netip.ParseAddr(target)
		if err != nil {
			return nil, cfgErr("targetAddress", "%v", err)
		}
		if a.Zone() != "" {
			return nil, cfgErr("targetAddress", "%q: a zone is not allowed", target)
		}
		if a.IsMulticast() || a.IsUnspecified() {
			return nil, cfgErr("targetAddress", "%q: want a unicast address", target)
		}
		c.Options.Target = a
	}
	if _, err := decodeKey(raw, "bindInterface", &c.Options.Interface); err != nil {
		return nil, err
	}
	if n := c.Options.Interface; n != "" {
		if len(n) >= wire.IfNameSize || strings.ContainsAny(n, "/:\x00 \t\n") || n == "." || n == ".." {
			return nil, cfgErr("bindInterface", "%q is not an interface name (at most %d bytes, no '/', ':' or spaces)", n, wire.IfNameSize-1)
		}
	}

	var timeout string
	if _, err := decodeKey(raw, "timeout", &timeout); err != nil {
		return nil, err
	}
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil {
			return nil, cfgErr("timeout", "%v (want a Go duration such as \"5s\")", err)
		}
		if d <= 0 {
			return nil, cfgErr("timeout", "%q: must be positive", timeout)
		}
		c.Timeout = d
	}
	if ok, err := decodeKey(raw, "dataDir", &c.DataDir); err != nil {
		return nil, err
	} else if ok && !filepath.IsAbs(c.DataDir) {
		return nil, cfgErr("dataDir", "%q is not an absolute path", c.DataDir)
	}
	c.DataDir = filepath.Clean(c.DataDir)
	if _, err := decodeKey(raw, "verify", &c.Verify); err != nil {
		return nil, err
	}

	if sc.mappingsErr != nil {
		return nil, sc.mappingsErr
	}
	c.Mappings = sc.mappings
	return c, nil
}

// splitConf is the configuration split by top-level key, with
// runtimeConfig.portMappings decoded.
type splitConf struct {
	raw      map[string]json.RawMessage // every top-level key but runtimeConfig
	mappings []translate.PortMapping
	// mappingsErr is runtimeConfig's error, which ParseConfig reports only
	// after every other key has been checked.
	mappingsErr error
}

// splitConfig reads the configuration in one typed pass (configurations
// carry up to tens of thousands of mappings, so it is not decoded again
// and again). Where that pass fails it reads the configuration again,
// key by key and mapping by mapping, to name what is wrong.
func splitConfig(stdin []byte) (splitConf, error) {
	if sc, ok := splitTyped(stdin); ok {
		return sc, nil
	}
	return splitNamed(stdin)
}

// splitTyped is the one pass: the top-level object token by token, each
// value kept raw, except runtimeConfig, whose portMappings are decoded
// straight into translate.PortMapping. Keys match exactly, as in a map
// (encoding/json would match struct fields ignoring case). ok is false on
// anything unexpected, for splitNamed to describe.
func splitTyped(stdin []byte) (sc splitConf, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(stdin))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return sc, false
	}
	sc.raw = map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		key, isKey := t.(string)
		if err != nil || !isKey {
			return sc, false
		}
		if key == "runtimeConfig" {
			if sc.mappings, ok = decodeRuntimeConfig(dec); !ok {
				return sc, false
			}
			continue
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return sc, false
		}
		sc.raw[key] = v
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return sc, false
	}
	if _, err := dec.Token(); err != io.EOF { // nothing may follow
		return sc, false
	}
	return sc, true
}

// decodeRuntimeConfig decodes the value of runtimeConfig from dec: null,
// or an object whose portMappings are decoded and other keys skipped.
func decodeRuntimeConfig(dec *json.Decoder) ([]translate.PortMapping, bool) {
	t, err := dec.Token()
	if err != nil {
		return nil, false
	}
	if t == nil {
		return nil, true // null: as if absent
	}
	if t != json.Delim('{') {
		return nil, false
	}
	var pms []translate.PortMapping
	for dec.More() {
		t, err := dec.Token()
		key, isKey := t.(string)
		if err != nil || !isKey {
			return nil, false
		}
		if key == "portMappings" {
			pms = nil // the last of duplicate keys counts, as in a map
			if err := dec.Decode(&pms); err != nil {
				return nil, false
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, false
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	return pms, true
}

// splitNamed decodes stdin key by key and each mapping on its own, so
// that an error names the key and the mapping's index.
func splitNamed(stdin []byte) (splitConf, error) {
	var sc splitConf
	if err := json.Unmarshal(stdin, &sc.raw); err != nil {
		return sc, &ConfigError{Key: "(configuration)", Err: fmt.Errorf("not a JSON object: %w", err)}
	}
	var rc map[string]json.RawMessage
	if _, err := decodeKey(sc.raw, "runtimeConfig", &rc); err != nil {
		sc.mappingsErr = err
		return sc, nil
	}
	delete(sc.raw, "runtimeConfig")
	var pms []json.RawMessage
	if _, err := decodeKey(rc, "portMappings", &pms); err != nil {
		sc.mappingsErr = &ConfigError{Key: "runtimeConfig." + err.(*ConfigError).Key, Err: err.(*ConfigError).Err}
		return sc, nil
	}
	for i, b := range pms {
		var m translate.PortMapping
		if err := json.Unmarshal(b, &m); err != nil {
			sc.mappingsErr = typeErr(fmt.Sprintf("runtimeConfig.portMappings[%d]", i), err)
			return sc, nil
		}
		sc.mappings = append(sc.mappings, m)
	}
	return sc, nil
}

// pluginConfKeys are the JSON names of types.PluginConf's fields.
func pluginConfKeys() []string {
	return []string{"cniVersion", "name", "type", "capabilities", "ipam", "dns", "prevResult", "cni.dev/valid-attachments"}
}

// pluginConf decodes the keys of raw that types.PluginConf knows, as
// decoding all of stdin into it would (its other fields are type-checked
// too), without going over the rest of stdin again. A key that
// encoding/json would match only ignoring case sends it back to stdin.
func pluginConf(stdin []byte, raw map[string]json.RawMessage) (types.PluginConf, error) {
	var pc types.PluginConf
	names := pluginConfKeys()
	for k := range raw {
		for _, name := range names {
			if k != name && strings.EqualFold(k, name) {
				return pc, json.Unmarshal(stdin, &pc)
			}
		}
	}
	b := []byte{'{'}
	for _, name := range names {
		if v, ok := raw[name]; ok {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, name)
			b = append(b, ':')
			b = append(b, v...)
		}
	}
	b = append(b, '}')
	return pc, json.Unmarshal(b, &pc)
}

// cniArg returns the value of key in CNI_ARGS ("K1=V1;K2=V2").
func cniArg(args, key string) (string, bool) {
	for _, kv := range strings.Split(args, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

var placeholders = []string{PHContainerID, PHIfName, PHNetns}

// checkTemplate refuses unknown placeholders and paths that are not
// absolute.
func checkTemplate(key, tmpl string) error {
	if tmpl == "" {
		return cfgErr(key, "empty path")
	}
	rest := tmpl
	for _, p := range placeholders {
		rest = strings.ReplaceAll(rest, p, "x")
	}
	if i := strings.Index(rest, "${"); i >= 0 {
		j := strings.IndexByte(rest[i:], '}')
		ph := rest[i:]
		if j >= 0 {
			ph = rest[i : i+j+1]
		}
		return cfgErr(key, "unknown placeholder %s in %q (known: %s)", ph, tmpl, strings.Join(placeholders, " "))
	}
	if !strings.HasPrefix(tmpl, "/") {
		return cfgErr(key, "%q is not an absolute path", tmpl)
	}
	return nil
}

// HasPlaceholders reports whether tmpl depends on the attachment.
func HasPlaceholders(tmpl string) bool {
	for _, p := range placeholders {
		if strings.Contains(tmpl, p) {
			return true
		}
	}
	return false
}

// MissingEnvError is a placeholder with no value in this call (DEL may
// come without CNI_NETNS; STATUS and GC have no attachment).
type MissingEnvError struct {
	Key         string
	Placeholder string
}

func (e *MissingEnvError) Error() string {
	return fmt.Sprintf("configuration key %s: placeholder %s has no value in this call", e.Key, e.Placeholder)
}

// Expand replaces the placeholders of tmpl with the call's values.
func Expand(key, tmpl string, env Env) (string, error) {
	vals := map[string]string{PHContainerID: env.ContainerID, PHIfName: env.IfName, PHNetns: ""}
	if env.Netns != "" {
		vals[PHNetns] = filepath.Base(env.Netns)
	}
	out := tmpl
	for _, p := range placeholders {
		if !strings.Contains(out, p) {
			continue
		}
		v := vals[p]
		if v == "" {
			return "", &MissingEnvError{Key: key, Placeholder: p}
		}
		if strings.ContainsAny(v, "/\x00") || v == "." || v == ".." {
			return "", cfgErr(key, "placeholder %s expands to %q, which is not a file name", p, v)
		}
		out = strings.ReplaceAll(out, p, v)
	}
	return filepath.Clean(out), nil
}

// MaxSocketPath is the longest path a UNIX socket address holds: sun_path
// is 108 bytes, its terminating NUL included.
const MaxSocketPath = 107

// ExpandSocket is Expand for a control socket path: a path longer than a
// UNIX socket address holds could never be connected to (the kernel
// refuses it), so it is a configuration error naming the expanded path.
func ExpandSocket(key, tmpl string, env Env) (string, error) {
	path, err := Expand(key, tmpl, env)
	if err != nil {
		return "", err
	}
	if len(path) > MaxSocketPath {
		return "", cfgErr(key, "expands to %q, %d bytes long: a UNIX socket address holds at most %d", path, len(path), MaxSocketPath)
	}
	return path, nil
}
