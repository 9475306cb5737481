package forwarder

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// pastaOption is one option of pasta's getopt_long table: its long
// name, its short letter (0 when it has none), whether it takes a value,
// and why a user may not pass it in Config.Args ("" when they may).
type pastaOption struct {
	long   string
	short  byte
	hasArg bool
	deny   string
	// value, when set, checks an allowed option's value and says why it
	// is refused ("" when it is not).
	value func(string) string
}

// Reasons for refusing an option in Config.Args.
const (
	denyOwn      = "is set by the managed forwarder itself"
	denyInbound  = "would forward ports outside the plugin's records: inbound ports come from the published port mappings (CNI portMappings, Podman -p), through the control socket"
	denyOutbound = "opens the host's loopback: use loopbackToHost instead"
	denyMap      = "maps an address to the host's loopback: use mapHostLoopback instead"
	denyNS       = "changes which namespaces pasta joins or when it quits"
	denyExit     = "makes pasta print something and exit instead of forwarding"
	denyFile     = "writes a file the plugin does not manage"
	denyMode     = "is for passt or vhost-user mode, not pasta"
)

// pastaOptions are all options of the pasta this package was written
// against (passt 0.0~git20261002.cba3570, optstring
// "+dqfel:hs:c:F:I:p:P:m:a:n:M:g:i:o:D:S:H:461t:u:T:U:"), checked
// against the real binary by integration/isolation_test.go. The whole
// table is needed, not only the allowed options: pasta accepts any
// unambiguous prefix of a long option, and a prefix is unambiguous only
// with respect to all of them.
var pastaOptions = []pastaOption{
	// Allowed: logging to the attachment's log file, and the shape of
	// the container's network. Those whose value pasta uses on the
	// host's side are checked (see hostSideAddr): none may aim the
	// container at the host's loopback.
	{"debug", 'd', false, "", nil},
	{"trace", 0, false, "", nil},
	{"quiet", 'q', false, "", nil},
	{"log-size", 0, true, "", nil},
	{"ns-ifname", 'I', true, "", nil},
	{"mtu", 'm', true, "", nil},
	{"address", 'a', true, "", guestAddr},
	{"netmask", 'n', true, "", nil},
	{"mac-addr", 'M', true, "", nil},
	{"ns-mac-addr", 0, true, "", nil},
	{"gateway", 'g', true, "", hostSideAddr},
	{"interface", 'i', true, "", hostInterface},
	{"outbound", 'o', true, "", outboundAddr},
	{"outbound-if4", 0, true, "", hostInterface},
	{"outbound-if6", 0, true, "", hostInterface},
	{"dns", 'D', true, "", nil},
	{"search", 'S', true, "", nil},
	{"hostname", 'H', true, "", nil},
	{"fqdn", 0, true, "", nil},
	{"dhcp-dns", 0, false, "", nil},
	{"dhcp-search", 0, false, "", nil},
	{"dns-forward", 0, true, "", nil},
	{"dns-host", 0, true, "", hostSideAddr},
	{"map-guest-addr", 0, true, "", hostSideAddr},
	{"ipv4-only", '4', false, "", nil},
	{"ipv6-only", '6', false, "", nil},
	{"no-tcp", 0, false, "", nil},
	{"no-udp", 0, false, "", nil},
	{"no-icmp", 0, false, "", nil},
	{"no-dhcp", 0, false, "", nil},
	{"no-dhcpv6", 0, false, "", nil},
	{"no-ndp", 0, false, "", nil},
	{"no-ra", 0, false, "", nil},
	{"no-splice", 0, false, "", nil},
	{"host-lo-to-ns-lo", 0, false, "", nil},
	{"freebind", 0, false, "", nil},
	{"no-copy-routes", 0, false, "", nil},
	{"no-copy-addrs", 0, false, "", nil},

	// Refused.
	{"conf-path", 'c', true, denyOwn, nil},
	{"pid", 'P', true, denyOwn, nil},
	{"log-file", 'l', true, denyOwn, nil},
	{"foreground", 'f', false, denyOwn, nil},
	{"runas", 0, true, denyOwn, nil},
	{"netns", 0, true, denyOwn, nil},
	{"userns", 0, true, denyOwn, nil},
	{"config-net", 0, false, denyOwn, nil},
	{"fd", 'F', true, denyOwn, nil},
	{"stderr", 'e', false, denyOwn, nil},
	{"tcp-ports", 't', true, denyInbound, nil},
	{"udp-ports", 'u', true, denyInbound, nil},
	{"tcp-ns", 'T', true, denyOutbound, nil},
	{"udp-ns", 'U', true, denyOutbound, nil},
	{"no-map-gw", 0, false, denyMap, nil},
	{"map-host-loopback", 0, true, denyMap, nil},
	{"netns-only", 0, false, denyNS, nil},
	{"no-netns-quit", 0, false, denyNS, nil},
	{"no-pidns", 0, false, denyNS, nil},
	{"splice-only", 0, false, "would leave the container without its interface", nil},
	{"chroot-fallback", 0, false, "weakens pasta's sandbox", nil},
	{"pcap", 'p', true, denyFile, nil},
	{"help", 'h', false, denyExit, nil},
	{"version", 0, false, denyExit, nil},
	{"print-capabilities", 0, false, denyExit, nil},
	{"stats", 0, true, "needs pasta in the foreground", nil},
	{"socket-path", 's', true, denyMode, nil},
	{"vhost-user", 0, false, denyMode, nil},
	{"one-off", '1', false, denyMode, nil},
	{"repair-path", 0, true, denyMode, nil},
	{"migrate-exit", 0, false, denyMode, nil},
	{"migrate-no-linger", 0, false, denyMode, nil},
	{"no-dhcp-dns", 0, false, denyMode, nil},
	{"no-dhcp-search", 0, false, denyMode, nil},
}

// Option describes one of pasta's options as this package knows it.
type Option struct {
	Long     string // without "--"
	Short    byte   // 0 when it has none
	HasValue bool
	Allowed  bool // a user may pass it in Config.Args
}

// Options returns pasta's options as this package parses them, for
// checking the table against a pasta binary.
func Options() []Option {
	out := make([]Option, len(pastaOptions))
	for i, o := range pastaOptions {
		out[i] = Option{Long: o.long, Short: o.short, HasValue: o.hasArg, Allowed: o.deny == ""}
	}
	return out
}

// ArgError is an entry of Config.Args that pasta would parse into an
// option the managed forwarder does not allow, or that is not an option.
type ArgError struct {
	Index  int    // index in Config.Args (the plugin's pastaArgs)
	Arg    string // that entry
	Option string // the option as pasta reads it, e.g. "-c (--conf-path)"; "" when none
	Reason string
}

func (e *ArgError) Error() string { return fmt.Sprintf("pastaArgs[%d] %s", e.Index, e.Detail()) }

// Detail is the message without the index.
func (e *ArgError) Detail() string {
	if e.Option == "" {
		return fmt.Sprintf("%q: %s", e.Arg, e.Reason)
	}
	return fmt.Sprintf("%q: option %s %s", e.Arg, e.Option, e.Reason)
}

// parsedArg is one option as pasta's getopt_long reads it.
type parsedArg struct {
	index int // of the entry that names the option
	opt   *pastaOption
	value string
}

func (o *pastaOption) String() string {
	if o.short != 0 {
		return fmt.Sprintf("-%c (--%s)", o.short, o.long)
	}
	return "--" + o.long
}

// lookupLong finds a long option the way glibc's getopt_long does: an
// exact name, else the only option the name is a prefix of. A prefix of
// several options is refused even where glibc would accept it (options
// that share flag and value): the safe side.
func lookupLong(name string) (*pastaOption, string) {
	var match []*pastaOption
	for i := range pastaOptions {
		o := &pastaOptions[i]
		if o.long == name {
			return o, ""
		}
		if name != "" && strings.HasPrefix(o.long, name) {
			match = append(match, o)
		}
	}
	switch len(match) {
	case 0:
		return nil, "is not an option of pasta"
	case 1:
		return match[0], ""
	}
	names := make([]string, len(match))
	for i, o := range match {
		names[i] = "--" + o.long
	}
	return nil, "is ambiguous (" + strings.Join(names, ", ") + ")"
}

func lookupShort(c byte) *pastaOption {
	for i := range pastaOptions {
		if pastaOptions[i].short == c {
			return &pastaOptions[i]
		}
	}
	return nil
}

// parseArgs reads args as pasta's getopt_long does (optstring with a
// leading '+': options end at the first entry that is not one): short
// options combined ("-4q") with a value attached ("-cPATH") or in the
// next entry ("-c PATH", "-4c PATH"), long options with "=VALUE" or the
// value in the next entry, and unambiguous prefixes of long options. It
// refuses what is not an option: pasta would run it, and everything after
// it (--netns included), as a command.
func parseArgs(args []string) ([]parsedArg, error) {
	var out []parsedArg
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return nil, &ArgError{Index: i, Arg: a, Reason: "ends pasta's options: what follows would run as a command"}
		case strings.HasPrefix(a, "--"):
			at := i
			name, val, hasVal := strings.Cut(a[2:], "=")
			o, why := lookupLong(name)
			if o == nil {
				return nil, &ArgError{Index: i, Arg: a, Option: "--" + name, Reason: why}
			}
			switch {
			case !o.hasArg && hasVal:
				return nil, &ArgError{Index: i, Arg: a, Option: o.String(), Reason: "takes no value"}
			case o.hasArg && !hasVal:
				if i+1 >= len(args) {
					return nil, &ArgError{Index: i, Arg: a, Option: o.String(), Reason: "needs a value"}
				}
				i++
				val = args[i]
			}
			out = append(out, parsedArg{index: at, opt: o, value: val})
		case len(a) > 1 && a[0] == '-':
			at := i
			for j := 1; j < len(a); j++ {
				o := lookupShort(a[j])
				if o == nil {
					return nil, &ArgError{Index: at, Arg: a, Option: "-" + string(a[j]), Reason: "is not an option of pasta"}
				}
				if !o.hasArg {
					out = append(out, parsedArg{index: at, opt: o})
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, &ArgError{Index: at, Arg: a, Option: o.String(), Reason: "needs a value"}
					}
					i++
					val = args[i]
				}
				out = append(out, parsedArg{index: at, opt: o, value: val})
				break
			}
		default:
			return nil, &ArgError{Index: i, Arg: a, Reason: "is not an option: pasta would run it, and the options after it, as a command"}
		}
	}
	return out, nil
}

// CheckArgs refuses extra pasta arguments that are not options, that
// pasta would not accept as written, or that are not on the list of
// options a user may pass (pastaOptions): only options that shape the
// container's network and pasta's logging into the attachment's log
// file, and of those none whose value would aim the container at the
// host's loopback (see hostSideAddr): only the configuration keys
// mapHostLoopback and loopbackToHost open it, in the CNI and the
// netavark front end alike, which both call this. The error is an
// *ArgError naming the entry, the option as pasta reads it, and why.
func CheckArgs(args []string) error {
	parsed, err := parseArgs(args)
	if err != nil {
		return err
	}
	for _, p := range parsed {
		if p.opt.deny != "" {
			return &ArgError{Index: p.index, Arg: args[p.index], Option: p.opt.String(), Reason: p.opt.deny}
		}
		if p.opt.value != nil {
			if why := p.opt.value(p.value); why != "" {
				return &ArgError{Index: p.index, Arg: args[p.index], Option: p.opt.String(), Reason: fmt.Sprintf("with value %q %s", p.value, why)}
			}
		}
	}
	return nil
}

// argValue returns the value of the last option long in args, parsed as
// pasta parses them (false when absent or args do not parse).
func argValue(args []string, long string) (string, bool) {
	parsed, err := parseArgs(args)
	if err != nil {
		return "", false
	}
	val, found := "", false
	for _, p := range parsed {
		if p.opt.long == long {
			val, found = p.value, true
		}
	}
	return val, found
}

// DNSForwardAddr is the address in the container that pasta answers DNS
// on, forwarding the queries to the host's resolver (pasta
// --dns-forward): with the host's loopback closed, this is how a
// container reaches a resolver on the host's loopback (systemd-resolved's
// 127.0.0.53). Podman uses the same address.
const DNSForwardAddr = "169.254.1.1"

// buildArgs returns pasta's arguments (without the binary) for a managed
// forwarder: network configuration copied into the namespace (with
// --config-net, so that pasta configures the interface itself), a
// control socket, a PID file and a log file, no inbound port forwarding
// (the plugin adds the container's mappings through the socket), and the
// host's loopback closed unless cfg opens it: no outbound forwarding from
// the namespace's loopback (-T none -U none unless LoopbackToHost) and no
// address mapped to the host's loopback (--no-map-gw, then
// --map-host-loopback for each of cfg.MapHostLoopback). DNS queries to
// DNSForwardAddr go to the host's resolver, unless Args set
// --dns-forward. euid is the caller's effective uid: as root, pasta would
// drop to "nobody" and could not join the namespace, so it runs as root
// (--runas 0). Rootless, pasta keeps the caller's uid and needs no
// --runas.
func buildArgs(cfg Config, inst Instance, euid int) []string {
	if cfg.Side != nil {
		return chainedArgs(cfg, inst, euid)
	}
	args := []string{"--config-net",
		"-c", inst.Socket,
		"-P", inst.PIDFile,
		"-l", inst.LogFile,
	}
	if euid == 0 {
		args = append(args, "--runas", "0")
	}
	args = append(args, "-t", "none", "-u", "none")
	if cfg.LoopbackToHost {
		args = append(args, "-T", "auto", "-U", "auto")
	} else {
		args = append(args, "-T", "none", "-U", "none")
	}
	args = append(args, "--no-map-gw")
	for _, a := range cfg.MapHostLoopback {
		args = append(args, "--map-host-loopback", a.String())
	}
	if _, ok := argValue(cfg.Args, "dns-forward"); !ok {
		args = append(args, "--dns-forward", DNSForwardAddr)
	}
	if _, ok := argValue(cfg.Args, "ns-ifname"); !ok && cfg.IfName != "" {
		args = append(args, "-I", cfg.IfName)
	}
	args = append(args, cfg.Args...)
	// --netns last: pasta takes a trailing PID or command otherwise.
	return append(args, "--netns", cfg.NetNS)
}

// CheckMapHostLoopback checks addresses for Config.MapHostLoopback: at
// most one per IP version, each a unicast address that leaves the
// container (not loopback, unspecified, multicast or with a zone).
func CheckMapHostLoopback(addrs []netip.Addr) error {
	var seen4, seen6 bool
	for _, a := range addrs {
		switch {
		case !a.IsValid():
			return fmt.Errorf("no address")
		case a.Zone() != "":
			return fmt.Errorf("%s: a zone is not allowed", a)
		case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return fmt.Errorf("%s: want a unicast address outside the container's loopback", a)
		case a.Is4In6():
			return fmt.Errorf("%s: write an IPv4 address as such", a)
		case a.Is4():
			if seen4 {
				return fmt.Errorf("%s: at most one IPv4 address", a)
			}
			seen4 = true
		default:
			if seen6 {
				return fmt.Errorf("%s: at most one IPv6 address", a)
			}
			seen6 = true
		}
	}
	return nil
}

// nsIfName is the name of the interface pasta makes in the namespace:
// -I in cfg.Args, else cfg.IfName ("" when pasta picks it).
func nsIfName(cfg Config) string {
	if v, ok := argValue(cfg.Args, "ns-ifname"); ok {
		return v
	}
	return cfg.IfName
}

// The host's loopback is reached only through the configuration keys
// mapHostLoopback and loopbackToHost. Options whose value pasta uses on
// the host's side could open it too:
//
//   - --outbound 127.0.0.1 binds the sockets pasta opens for the
//     container to the host's loopback: host services see the container
//     as a peer on 127.0.0.1, which they trust;
//   - --outbound-if4/-if6 lo bind them to the loopback interface;
//   - --dns-host 127.0.0.1 (or 0.0.0.0, which a connect treats as the
//     local host) sends the container's DNS traffic to the host's
//     loopback;
//   - --map-guest-addr maps an address of the container to the
//     container's address on the host, which --address or --interface lo
//     can make a loopback address;
//   - --gateway is used as a source address towards the container.
//
// Each of these is checked here. --dns and --dns-forward name addresses
// inside the container and stay free.

// loopbackReason is why an address aimed at the host's side is refused.
const loopbackReason = "would aim the container at the host's loopback, which only mapHostLoopback and loopbackToHost open"

// parseValueAddr parses an address value as pasta would take it: an IP
// address, maybe with a zone; IPv4-mapped IPv6 as IPv4.
func parseValueAddr(v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// hostSideAddr checks an address pasta uses on the host's side: not a
// loopback address, not unspecified (a connect to 0.0.0.0 or :: reaches
// the local host), and one this check can read ("none" is pasta's "no
// address").
func hostSideAddr(v string) string {
	if v == "none" {
		return ""
	}
	a, ok := parseValueAddr(v)
	switch {
	case !ok:
		return "is not an IP address this plugin can check"
	case a.IsLoopback() || a.IsUnspecified():
		return loopbackReason
	}
	return ""
}

// guestAddr checks --address, ADDR[/PREFIX]: the container's address,
// which --map-guest-addr maps to on the host's side.
func guestAddr(v string) string {
	addr, _, _ := strings.Cut(v, "/")
	return hostSideAddr(addr)
}

// outboundAddr checks --outbound: the source address of pasta's sockets
// on the host; unspecified is pasta's default (the routing tables pick).
func outboundAddr(v string) string {
	a, ok := parseValueAddr(v)
	switch {
	case !ok:
		return "is not an IP address this plugin can check"
	case a.IsLoopback():
		return loopbackReason
	}
	return ""
}

// hostInterface checks a host interface name (--interface,
// --outbound-if4, --outbound-if6): not the loopback interface, by name or,
// for one of this host's interfaces, by its flags.
func hostInterface(v string) string {
	if v == "lo" {
		return "names the host's loopback interface: " + loopbackReason
	}
	if ifi, err := net.InterfaceByName(v); err == nil && ifi.Flags&net.FlagLoopback != 0 {
		return "names a loopback interface of the host: " + loopbackReason
	}
	return ""
}
