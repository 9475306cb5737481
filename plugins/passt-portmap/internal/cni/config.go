package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// The keys this front end reads itself (the others are the core's
// settings, read by attach.Input's Options).
const (
	// argSocket is the CNI_ARGS key that overrides "socket" for one call.
	argSocket = "PASST_SOCKET"
	// argK8sNamespace and argK8sName are the CNI_ARGS keys a CRI runtime
	// (containerd, CRI-O) sends: the call is a Kubernetes pod's.
	argK8sNamespace = "K8S_POD_NAMESPACE"
	argK8sName      = "K8S_POD_NAME"
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
// ignored; a key whose value is null counts as absent. M is how
// runtimeConfig.portMappings is decoded: typed in the one pass that
// succeeds for a good configuration, raw (to be decoded entry by entry,
// naming the bad one) when that pass fails.
type netConf[M any] struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	// The other keys of types.PluginConf, decoded with it when there is
	// a previous result.
	Type         json.RawMessage `json:"type"`
	Capabilities json.RawMessage `json:"capabilities"`
	IPAM         json.RawMessage `json:"ipam"`
	DNS          json.RawMessage `json:"dns"`
	PrevResult   json.RawMessage `json:"prevResult"`
	// GC's list; libcni also sends it as "cni.dev/attachments" (the name
	// an early spec used). Present but null is an empty list.
	ValidAttachments json.RawMessage `json:"cni.dev/valid-attachments"`
	Attachments      json.RawMessage `json:"cni.dev/attachments"`

	Forwarder string  `json:"forwarder"`
	Socket    *string `json:"socket"`
	PIDFile   string  `json:"pidFile"`

	// The core's settings, as JSON gives them.
	Pasta           string   `json:"pasta"`
	PastaArgs       []string `json:"pastaArgs"`
	AllowChained    bool     `json:"allowChained"`
	MapHostLoopback string   `json:"mapHostLoopback"`
	LoopbackToHost  bool     `json:"loopbackToHost"`
	SideInterface   string   `json:"sideInterface"`
	SideTable       *int     `json:"sideTable"`
	SideNetwork     string   `json:"sideNetwork"`
	Weak            bool     `json:"weak"`
	TargetAddress   string   `json:"targetAddress"`
	BindInterface   string   `json:"bindInterface"`
	Timeout         string   `json:"timeout"`
	DataDir         string   `json:"dataDir"`
	Verify          *bool    `json:"verify"`

	RuntimeConfig *runtimeConfig[M] `json:"runtimeConfig"`
}

// input is the core's settings of the configuration.
func (nc *netConf[M]) input() attach.Input {
	return attach.Input{DataDir: nc.DataDir, Timeout: nc.Timeout, Verify: nc.Verify, Weak: nc.Weak,
		Pasta: nc.Pasta, PastaArgs: nc.PastaArgs, MapHostLoopback: nc.MapHostLoopback, LoopbackToHost: nc.LoopbackToHost,
		TargetAddress: nc.TargetAddress, BindInterface: nc.BindInterface, AllowChained: nc.AllowChained,
		SideInterface: nc.SideInterface, SideTable: nc.SideTable, SideNetwork: nc.SideNetwork}
}

type runtimeConfig[M any] struct {
	PortMappings M `json:"portMappings"`
}

type (
	typedConf = netConf[mappingList]
	rawConf   = netConf[json.RawMessage]
)

// PortMapping is one entry of runtimeConfig.portMappings, as CNI's
// portMappings capability defines it.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// mapping is m as the core takes it.
func (m PortMapping) mapping() attach.Mapping {
	return attach.Mapping{HostIP: m.HostIP, HostPort: m.HostPort, ContainerPort: m.ContainerPort, Protocols: []string{m.Protocol}}
}

// mappingList decodes a list of mappings afresh, as the raw pass does: of
// duplicate keys the last counts whole (encoding/json would decode it into
// the earlier list's elements, keeping their fields).
type mappingList []PortMapping

func (m *mappingList) UnmarshalJSON(b []byte) error {
	var fresh []PortMapping
	if err := json.Unmarshal(b, &fresh); err != nil {
		return err
	}
	*m = fresh
	return nil
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
	Managed        bool
	// Kubernetes is true when CNI_ARGS carries K8S_POD_NAMESPACE and
	// K8S_POD_NAME, as the CRI runtimes (containerd, CRI-O) send them.
	Kubernetes bool

	// Options are the core's settings, read and checked by the core
	// (attach.Input's Options), with its defaults; the mode is set by the
	// call (see parse).
	Options  attach.Options
	Mappings []PortMapping

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
	var typed typedConf
	if err := json.Unmarshal(stdin, &typed); err == nil {
		c, err := parseKeys(&typed, env)
		if err != nil {
			return nil, err
		}
		if typed.RuntimeConfig != nil {
			c.Mappings = typed.RuntimeConfig.PortMappings
		}
		return c, nil
	}
	// Decode again, keeping the mappings raw: a key in error outside
	// them is named now, one inside them after every other key.
	var raw rawConf
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return nil, typeErr("", err)
	}
	c, err := parseKeys(&raw, env)
	if err != nil {
		return nil, err
	}
	if raw.RuntimeConfig != nil {
		if c.Mappings, err = decodeMappings(raw.RuntimeConfig.PortMappings); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// parseKeys validates every key but the mappings: the CNI keys here, the
// core's settings by the core.
func parseKeys[M any](nc *netConf[M], env Env) (*Config, error) {
	c := &Config{Network: nc.Name, CNIVersion: nc.CNIVersion}
	if err := c.parseVersion(); err != nil {
		return nil, err
	}
	if err := c.parsePrevResult(pluginConf(nc)); err != nil {
		return nil, err
	}
	if err := c.parseAttachments(nc.ValidAttachments, nc.Attachments); err != nil {
		return nil, err
	}
	if err := c.parseForwarder(nc.Forwarder, nc.Socket, nc.PIDFile, env); err != nil {
		return nil, err
	}
	_, ns := cniArg(env.Args, argK8sNamespace)
	_, name := cniArg(env.Args, argK8sName)
	c.Kubernetes = ns && name
	var err error
	if c.Options, err = nc.input().Options(); err != nil {
		return nil, err
	}
	return c, nil
}

// pluginConf is the configuration's types.PluginConf keys as one object,
// nil without a previous result.
func pluginConf[M any](nc *netConf[M]) []byte {
	if nc.PrevResult == nil {
		return nil
	}
	b := []byte{'{'}
	add := func(key string, v []byte) {
		if v == nil {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, key)
		b = append(append(b, ':'), v...)
	}
	add("cniVersion", strconv.AppendQuote(nil, nc.CNIVersion))
	add("name", strconv.AppendQuote(nil, nc.Name))
	add("type", nc.Type)
	add("capabilities", nc.Capabilities)
	add("ipam", nc.IPAM)
	add("dns", nc.DNS)
	add("prevResult", nc.PrevResult)
	add("cni.dev/valid-attachments", nc.ValidAttachments)
	return append(b, '}')
}

func (c *Config) parseVersion() error {
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

// parsePrevResult decodes the configuration's types.PluginConf keys, as
// libcni would (its other fields are type-checked too), and the previous
// result in them.
func (c *Config) parsePrevResult(conf []byte) error {
	if conf == nil {
		return nil
	}
	var pc types.PluginConf
	if err := json.Unmarshal(conf, &pc); err != nil {
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

func (c *Config) parseAttachments(valid, attachments json.RawMessage) error {
	for _, a := range []struct {
		key string
		raw json.RawMessage
	}{{"cni.dev/valid-attachments", valid}, {"cni.dev/attachments", attachments}} {
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

// parseForwarder reads the keys that choose the forwarder: managed, or
// the socket (and PID file) of one started elsewhere.
func (c *Config) parseForwarder(mode string, socket *string, pidFile string, env Env) error {
	hasSocket := socket != nil
	if hasSocket {
		c.Socket = *socket
	}
	switch mode {
	case "":
		c.Managed = !hasSocket
	case forwarderManaged:
		if hasSocket {
			return cfgErr("socket", "cannot be combined with \"forwarder\": %q (a managed forwarder's socket is under dataDir)", forwarderManaged)
		}
		c.Managed = true
	default:
		return cfgErr("forwarder", "%q is not a forwarder mode: only %q is known (or leave it out and set \"socket\")", mode, forwarderManaged)
	}
	if hasSocket {
		if err := checkTemplate("socket", c.Socket); err != nil {
			return err
		}
	}
	if c.PIDFile = pidFile; c.PIDFile != "" {
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
	return nil
}

// decodeMappings decodes runtimeConfig.portMappings entry by entry, to
// name the entry in error.
func decodeMappings(raw json.RawMessage) ([]PortMapping, error) {
	if isNull(raw) {
		return nil, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, typeErr("runtimeConfig.portMappings", err)
	}
	ms := make([]PortMapping, len(entries))
	for i, e := range entries {
		if err := json.Unmarshal(e, &ms[i]); err != nil {
			return nil, typeErr(fmt.Sprintf("runtimeConfig.portMappings[%d]", i), err)
		}
	}
	return ms, nil
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
	if socket, err = expandSocket(key, cfg.Socket, env); err != nil {
		return "", "", err
	}
	if cfg.PIDFile != "" {
		if pidFile, err = expand("pidFile", cfg.PIDFile, env); err != nil {
			return "", "", err
		}
	}
	return socket, pidFile, nil
}

// maxSocketPath is the longest path a UNIX socket address holds: sun_path
// is 108 bytes, its terminating NUL included.
const maxSocketPath = forwarder.MaxSocketPath

// expandSocket is expand for a control socket path: a path longer than a
// UNIX socket address holds could never be connected to (the kernel
// refuses it), so it is a configuration error naming the expanded path.
func expandSocket(key, tmpl string, env Env) (string, error) {
	path, err := expand(key, tmpl, env)
	if err != nil {
		return "", err
	}
	if len(path) > maxSocketPath {
		return "", cfgErr(key, "expands to %q, %d bytes long: a UNIX socket address holds at most %d", path, len(path), maxSocketPath)
	}
	return path, nil
}
