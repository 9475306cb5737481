package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// Defaults of the optional configuration keys.
const (
	defaultTimeout = 5 * time.Second
	defaultDataDir = "/var/lib/cni/passt-portmap"
	// argSocket is the CNI_ARGS key that overrides "socket" for one call.
	argSocket = "PASST_SOCKET"
	// forwarderManaged is the value of "forwarder" that makes the plugin
	// start pasta itself.
	forwarderManaged = "managed"
)

// Placeholders expanded in "socket" and "pidFile".
const (
	phContainerID = "${CNI_CONTAINERID}"
	phIfName      = "${CNI_IFNAME}"
	phNetns       = "${CNI_NETNS}" // the base name of CNI_NETNS
)

// netConf is the configuration as the runtime sends it. Unknown keys are
// ignored; a key whose value is null counts as absent.
type netConf struct {
	CNIVersion string          `json:"cniVersion"`
	Name       string          `json:"name"`
	PrevResult json.RawMessage `json:"prevResult"`
	// GC's list; libcni also sends it as "cni.dev/attachments" (the name
	// an early spec used). Present but null is an empty list.
	ValidAttachments json.RawMessage `json:"cni.dev/valid-attachments"`
	Attachments      json.RawMessage `json:"cni.dev/attachments"`

	Forwarder    string   `json:"forwarder"`
	Socket       *string  `json:"socket"`
	PIDFile      string   `json:"pidFile"`
	Pasta        string   `json:"pasta"`
	PastaArgs    []string `json:"pastaArgs"`
	AllowChained bool     `json:"allowChained"`

	Weak          bool    `json:"weak"`
	TargetAddress string  `json:"targetAddress"`
	BindInterface string  `json:"bindInterface"`
	Timeout       string  `json:"timeout"`
	DataDir       *string `json:"dataDir"`
	Verify        *bool   `json:"verify"`

	RuntimeConfig *runtimeConfig `json:"runtimeConfig"`
}

type runtimeConfig struct {
	// PortMappings is decoded entry by entry after the other keys are
	// checked, so that an error names the entry's index.
	PortMappings json.RawMessage `json:"portMappings"`
}

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

func cfgErr(key, format string, a ...any) error {
	return &attach.ConfigError{Key: key, Err: fmt.Errorf(format, a...)}
}

// typeErr names the key of a JSON decoding error: the path encoding/json
// reports under prefix.
func typeErr(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		key := prefix
		if te.Field != "" {
			key = strings.TrimPrefix(prefix+"."+te.Field, ".")
		}
		if key == "" {
			return &attach.ConfigError{Key: "(configuration)", Err: fmt.Errorf("not a JSON object: got a JSON %s", te.Value)}
		}
		return &attach.ConfigError{Key: key, Err: fmt.Errorf("got a JSON %s, want %s", te.Value, jsonType(te.Type.String()))}
	}
	if prefix == "" {
		return &attach.ConfigError{Key: "(configuration)", Err: fmt.Errorf("not a JSON object: %w", err)}
	}
	return &attach.ConfigError{Key: prefix, Err: err}
}

func jsonType(goType string) string {
	switch {
	case goType == "string" || goType == "*string":
		return "a string"
	case goType == "bool" || goType == "*bool":
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

// ParseConfig parses and validates the network configuration the runtime
// sent on stdin.
func ParseConfig(stdin []byte, env Env) (*Config, error) {
	var nc netConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, typeErr("", err)
	}
	c := &Config{Network: nc.Name, CNIVersion: nc.CNIVersion, Timeout: defaultTimeout, DataDir: defaultDataDir, Verify: true}
	for _, check := range []func(*netConf, []byte, Env) error{
		c.parseVersion, c.parsePrevResult, c.parseAttachments, c.parseForwarder, c.parseOptions, c.parseMappings,
	} {
		if err := check(&nc, stdin, env); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Config) parseVersion(nc *netConf, _ []byte, _ Env) error {
	if c.Network == "" {
		return cfgErr("name", "missing network name")
	}
	if c.CNIVersion == "" {
		c.CNIVersion = "0.1.0" // as libcni reads a configuration without one
	}
	if _, _, _, err := version.ParseVersion(c.CNIVersion); err != nil {
		return cfgErr("cniVersion", "%v", err)
	}
	return nil
}

// parsePrevResult decodes the configuration as types.PluginConf, which
// type-checks its other fields too, and the previous result in it.
func (c *Config) parsePrevResult(nc *netConf, stdin []byte, _ Env) error {
	if nc.PrevResult == nil {
		return nil
	}
	var pc types.PluginConf
	if err := json.Unmarshal(stdin, &pc); err != nil {
		return typeErr("prevResult", err)
	}
	if pc.RawPrevResult != nil {
		if err := version.ParsePrevResult(&pc); err != nil {
			return cfgErr("prevResult", "%v", err)
		}
		c.PrevResult = pc.PrevResult
	}
	return nil
}

func (c *Config) parseAttachments(nc *netConf, _ []byte, _ Env) error {
	for _, a := range []struct {
		key string
		raw json.RawMessage
	}{{"cni.dev/valid-attachments", nc.ValidAttachments}, {"cni.dev/attachments", nc.Attachments}} {
		if a.raw == nil || c.HasValidAttachments {
			continue
		}
		if err := json.Unmarshal(a.raw, &c.ValidAttachments); err != nil {
			return typeErr(a.key, err)
		}
		c.HasValidAttachments = true
	}
	return nil
}

func (c *Config) parseForwarder(nc *netConf, _ []byte, env Env) error {
	hasSocket := nc.Socket != nil
	if hasSocket {
		c.Socket = *nc.Socket
	}
	switch nc.Forwarder {
	case "":
		c.Managed = !hasSocket
	case forwarderManaged:
		if hasSocket {
			return cfgErr("socket", "cannot be combined with \"forwarder\": %q (a managed forwarder's socket is under dataDir)", forwarderManaged)
		}
		c.Managed = true
	default:
		return cfgErr("forwarder", "%q is not a forwarder mode: only %q is known (or leave it out and set \"socket\")", nc.Forwarder, forwarderManaged)
	}
	if hasSocket {
		if err := checkTemplate("socket", c.Socket); err != nil {
			return err
		}
	}
	if c.PIDFile = nc.PIDFile; c.PIDFile != "" {
		if c.Managed {
			return cfgErr("pidFile", "is set by the plugin for a managed forwarder; leave it out")
		}
		if err := checkTemplate("pidFile", c.PIDFile); err != nil {
			return err
		}
	}
	if s, ok := cniArg(env.Args, argSocket); ok {
		if err := checkTemplate("CNI_ARGS "+argSocket, s); err != nil {
			return err
		}
		c.Socket, c.SocketFromArgs, c.Managed = s, true, false
	}
	c.Pasta, c.PastaArgs, c.AllowChained = nc.Pasta, nc.PastaArgs, nc.AllowChained
	return nil
}

func (c *Config) parseOptions(nc *netConf, _ []byte, _ Env) error {
	c.Options.Weak = nc.Weak
	if t := nc.TargetAddress; t != "" {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return cfgErr("targetAddress", "%v", err)
		}
		if err := translate.CheckTarget(a); err != nil {
			return &attach.ConfigError{Key: "targetAddress", Err: fmt.Errorf("want a unicast address: %w", err)}
		}
		c.Options.Target = a
	}
	if n := nc.BindInterface; n != "" {
		if err := translate.CheckInterface(n); err != nil {
			return &attach.ConfigError{Key: "bindInterface", Err: fmt.Errorf("not an interface name: %w", err)}
		}
		c.Options.Interface = n
	}
	if nc.Timeout != "" {
		d, err := time.ParseDuration(nc.Timeout)
		if err != nil {
			return cfgErr("timeout", "%v (want a Go duration such as \"5s\")", err)
		}
		if d <= 0 {
			return cfgErr("timeout", "%q: must be positive", nc.Timeout)
		}
		c.Timeout = d
	}
	if nc.DataDir != nil {
		if c.DataDir = *nc.DataDir; !filepath.IsAbs(c.DataDir) {
			return cfgErr("dataDir", "%q is not an absolute path", c.DataDir)
		}
	}
	c.DataDir = filepath.Clean(c.DataDir)
	if nc.Verify != nil {
		c.Verify = *nc.Verify
	}
	return nil
}

// parseMappings decodes runtimeConfig.portMappings entry by entry, so
// that an error names the entry.
func (c *Config) parseMappings(nc *netConf, _ []byte, _ Env) error {
	if nc.RuntimeConfig == nil || isNull(nc.RuntimeConfig.PortMappings) {
		return nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(nc.RuntimeConfig.PortMappings, &entries); err != nil {
		return typeErr("runtimeConfig.portMappings", err)
	}
	c.Mappings = make([]translate.PortMapping, len(entries))
	for i, e := range entries {
		if err := json.Unmarshal(e, &c.Mappings[i]); err != nil {
			return typeErr(fmt.Sprintf("runtimeConfig.portMappings[%d]", i), err)
		}
	}
	return nil
}

func isNull(b json.RawMessage) bool {
	return b == nil || bytes.Equal(bytes.TrimSpace(b), []byte("null"))
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

var placeholders = []string{phContainerID, phIfName, phNetns}

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

// hasPlaceholders reports whether tmpl depends on the attachment.
func hasPlaceholders(tmpl string) bool {
	for _, p := range placeholders {
		if strings.Contains(tmpl, p) {
			return true
		}
	}
	return false
}

// errNoValue marks a placeholder with no value in this call (DEL may come
// without CNI_NETNS; STATUS and GC have no attachment).
var errNoValue = errors.New("has no value in this call")

// expand replaces the placeholders of tmpl with the call's values.
func expand(key, tmpl string, env Env) (string, error) {
	vals := map[string]string{phContainerID: env.ContainerID, phIfName: env.IfName, phNetns: ""}
	if env.Netns != "" {
		vals[phNetns] = filepath.Base(env.Netns)
	}
	out := tmpl
	for _, p := range placeholders {
		if !strings.Contains(out, p) {
			continue
		}
		v := vals[p]
		if v == "" {
			return "", &attach.ConfigError{Key: key, Err: fmt.Errorf("placeholder %s %w", p, errNoValue)}
		}
		if strings.ContainsAny(v, "/\x00") || v == "." || v == ".." {
			return "", cfgErr(key, "placeholder %s expands to %q, which is not a file name", p, v)
		}
		out = strings.ReplaceAll(out, p, v)
	}
	return filepath.Clean(out), nil
}

// resolveSocket expands the configured socket and PID file of an
// external forwarder for this call.
func resolveSocket(cfg *Config, env Env) (socket, pidFile string, err error) {
	key := "socket"
	if cfg.SocketFromArgs {
		key = "CNI_ARGS " + argSocket
	}
	if socket, err = expand(key, cfg.Socket, env); err != nil {
		return "", "", err
	}
	if cfg.PIDFile != "" {
		if pidFile, err = expand("pidFile", cfg.PIDFile, env); err != nil {
			return "", "", err
		}
	}
	return socket, pidFile, nil
}
