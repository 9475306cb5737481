package attach

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/sidenet"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// Input is a front end's settings as its runtime's input gives them:
// decoded from the input's format (JSON types, a network option's string
// into a boolean or a list of words), not yet read. Options reads every
// value, the same way for every front end. A field left zero (an empty
// string, a nil pointer) is a setting left out: it takes the default.
type Input struct {
	DataDir string // an absolute path; default DefaultDataDir
	Timeout string // a Go duration; default DefaultTimeout
	Verify  *bool  // default true
	Weak    bool

	Pasta     string // a path, or a name looked up in PATH; default pasta from PATH
	PastaArgs []string
	// MapHostLoopback is one IP address, or an IPv4 and an IPv6 one
	// separated by a comma.
	MapHostLoopback string
	LoopbackToHost  bool
	TargetAddress   string // an IP address
	BindInterface   string // an interface name
	AllowChained    bool

	SideInterface string // an interface name
	SideTable     *int
	// SideNetwork is a prefix, or an IPv4 and an IPv6 one separated by a
	// comma.
	SideNetwork string
}

// Options reads in: every value parsed and checked (see Options.Check),
// the defaults of what it leaves out filled in, but for the data
// directory's, which depends on who runs each call (DefaultDataDir). An
// error is a *ConfigError naming the setting. What the front end decides
// itself (Managed, Socket, PIDFile, Prior, Kubernetes, NoNetwork) is left
// for it to set.
func (in Input) Options() (Options, error) {
	o := Options{DataDir: in.DataDir, Timeout: DefaultTimeout, Verify: true, Weak: in.Weak,
		Pasta: in.Pasta, PastaArgs: in.PastaArgs, LoopbackToHost: in.LoopbackToHost,
		BindInterface: in.BindInterface, AllowChained: in.AllowChained}
	if in.Verify != nil {
		o.Verify = *in.Verify
	}
	if in.Timeout != "" {
		d, err := time.ParseDuration(in.Timeout)
		switch {
		case err != nil:
			return Options{}, settingErr(SettingTimeout, "%v (want a Go duration such as \"5s\")", err)
		case d <= 0:
			return Options{}, settingErr(SettingTimeout, "%q: must be positive", in.Timeout)
		}
		o.Timeout = d
	}
	if in.TargetAddress != "" {
		a, err := netip.ParseAddr(in.TargetAddress)
		if err != nil {
			return Options{}, settingErr(SettingTargetAddress, "%q is not an IP address", in.TargetAddress)
		}
		o.TargetAddress = a
	}
	if in.MapHostLoopback != "" {
		for _, f := range strings.Split(in.MapHostLoopback, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil {
				return Options{}, settingErr(SettingMapHostLoopback, "%q: want one IP address, or an IPv4 and an IPv6 address separated by a comma", in.MapHostLoopback)
			}
			o.MapHostLoopback = append(o.MapHostLoopback, a)
		}
	}
	o.Side.IfName = in.SideInterface
	if t := in.SideTable; t != nil {
		if err := sidenet.CheckTable(*t); err != nil {
			return Options{}, &ConfigError{Setting: SettingSideTable, Err: err}
		}
		o.Side.Table = *t
	}
	if err := o.Side.parseNetworks(in.SideNetwork); err != nil {
		return Options{}, err
	}
	return o, o.Check()
}

// sideNetworkWant says what the sideNetwork setting takes, for its
// refusals.
const sideNetworkWant = `want an IPv4 link-local prefix, an IPv6 unique local one, or both separated by a comma, e.g. "169.254.100.0/30,fd41:e00e:44f8::/64"`

// parseNetworks reads the sideNetwork setting into s.
func (s *SideOptions) parseNetworks(v string) error {
	if v == "" {
		return nil
	}
	for _, f := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return settingErr(SettingSideNetwork, "%v (%s)", err, sideNetworkWant)
		}
		switch {
		case p.Addr().Is4() && !s.Network4.IsValid():
			s.Network4 = p
		case p.Addr().Is6() && !s.Network6.IsValid():
			s.Network6 = p
		default:
			return settingErr(SettingSideNetwork, "%q: at most one prefix of each IP version", v)
		}
	}
	return nil
}

// Check reports an option no call can use, as a *ConfigError naming the
// setting, and cleans the data directory's path. It is the one check of
// the options: Input.Options ends with it, and every entry point of the
// core checks its options with it, whoever made them.
func (o *Options) Check() error {
	if o.DataDir != "" {
		if !filepath.IsAbs(o.DataDir) {
			return settingErr(SettingDataDir, "%q is not an absolute path", o.DataDir)
		}
		o.DataDir = filepath.Clean(o.DataDir)
	}
	if o.Timeout < 0 {
		return settingErr(SettingTimeout, "%v: must be positive", o.Timeout)
	}
	if p := o.Pasta; p != "" && !filepath.IsAbs(p) && strings.Contains(p, "/") {
		return settingErr(SettingPasta, "%q: want an absolute path or a name to look up in PATH", p)
	}
	if err := argsErr(forwarder.CheckArgs(o.PastaArgs)); err != nil {
		return err
	}
	if len(o.MapHostLoopback) > 0 {
		if err := forwarder.CheckMapHostLoopback(o.MapHostLoopback); err != nil {
			return &ConfigError{Setting: SettingMapHostLoopback, Err: err}
		}
	}
	if t := o.TargetAddress; t.IsValid() {
		if err := translate.CheckTarget(t); err != nil {
			return settingErr(SettingTargetAddress, "want a unicast address: %w", err)
		}
	}
	if n := o.BindInterface; n != "" {
		if err := translate.CheckInterface(n); err != nil {
			return settingErr(SettingBindInterface, "not an interface name: %w", err)
		}
	}
	return o.Side.check()
}

// check reports side options that cannot shape a side.
func (s *SideOptions) check() error {
	if s.IfName != "" {
		if err := translate.CheckInterface(s.IfName); err != nil {
			return settingErr(SettingSideInterface, "not an interface name: %w", err)
		}
	}
	if s.Table != 0 {
		if err := sidenet.CheckTable(s.Table); err != nil {
			return &ConfigError{Setting: SettingSideTable, Err: err}
		}
	}
	for _, n := range []struct {
		p    netip.Prefix
		four bool
	}{{s.Network4, true}, {s.Network6, false}} {
		if !n.p.IsValid() {
			continue
		}
		if n.p.Addr().Is4() != n.four {
			return settingErr(SettingSideNetwork, "%s is not an IPv%s prefix", n.p, map[bool]string{true: "4", false: "6"}[n.four])
		}
		if err := sidenet.CheckNetwork(n.p); err != nil {
			return settingErr(SettingSideNetwork, "%v (%s)", err, sideNetworkWant)
		}
	}
	return nil
}

func settingErr(s Setting, format string, a ...any) error {
	return &ConfigError{Setting: s, Err: fmt.Errorf(format, a...)}
}

// argsErr names the pastaArgs entry that forwarder.CheckArgs or
// CheckChainedArgs refused.
func argsErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *forwarder.ArgError
	if errors.As(err, &ae) {
		return &ConfigError{Setting: SettingPastaArgs, List: true, Entry: ae.Index, Err: errors.New(ae.Detail())}
	}
	return &ConfigError{Setting: SettingPastaArgs, Err: err}
}

// CheckMappings reports the first mapping that no forwarder could take,
// whatever the options: a port outside 1..65535 (the last of a range
// too), a range outside 1..65535, a protocol other than TCP and UDP, an
// empty protocol name beside others, a hostIP that is not an address
// without a zone, or one no listener can bind. The error is a
// *MappingError naming the mapping and its field. It is the one check of
// mappings: the core's calls check theirs with it, and so does a front end
// that refuses mappings before it calls the core.
func CheckMappings(ms []Mapping) error {
	for i, m := range ms {
		if _, err := checkMapping(i, m); err != nil {
			return err
		}
	}
	return nil
}

// checkMapping checks the i-th mapping and returns its protocols in
// lower case, each once; none is TCP.
func checkMapping(i int, m Mapping) ([]string, error) {
	fail := func(f Field, err error) ([]string, error) { return nil, &MappingError{Index: i, Field: f, Err: err} }
	if m.Range < 0 || m.Range > 65535 {
		return fail(FieldRange, fmt.Errorf("%w: range %d: want 1 to 65535 ports", translate.ErrPort, m.Range))
	}
	n := max(m.Range, 1)
	for _, p := range []struct {
		f    Field
		port int
	}{{FieldHostPort, m.HostPort}, {FieldContainerPort, m.ContainerPort}} {
		if err := translate.CheckPort(p.port); err != nil {
			return fail(p.f, err)
		}
		if last := p.port + n - 1; last > 65535 {
			return fail(p.f, fmt.Errorf("%w: %d with range %d: the last port would be %d, past 65535", translate.ErrPort, p.port, n, last))
		}
	}
	var protos []string
	for _, p := range m.Protocols {
		name := strings.ToLower(p)
		switch {
		case name == "" && len(m.Protocols) > 1:
			return fail(FieldProtocol, fmt.Errorf("%w: an empty name among %q", translate.ErrProtocol, m.Protocols))
		case name == "":
			name = "tcp"
		}
		if _, err := translate.ParseProtocol(p); err != nil {
			return fail(FieldProtocol, err)
		}
		if !slices.Contains(protos, name) {
			protos = append(protos, name)
		}
	}
	if len(protos) == 0 {
		protos = []string{"tcp"}
	}
	if m.HostIP != "" {
		if _, err := translate.ParseHostIP(m.HostIP); err != nil {
			return fail(FieldHostIP, err)
		}
	}
	return protos, nil
}

// resolve checks the options (Check) and fills in the defaults of unset
// options that depend on who runs the plugin: DataDir ("" is
// DefaultDataDir). Every entry point of the core calls it first.
func (o *Options) resolve() error {
	if err := o.Check(); err != nil {
		return err
	}
	if o.DataDir != "" {
		return nil
	}
	d, err := DefaultDataDir(ProcessIdentity())
	if err != nil {
		return err
	}
	o.DataDir = d
	return nil
}
