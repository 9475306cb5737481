// Package attachtest holds what the tests of the core and of each front
// end share: a bad value of every setting the core reads and of every
// field of a port mapping, with the reason the one check (attach.Input's
// Options, attach.CheckMappings) gives. A front end's test writes each
// into its own input format and proves that the value reaches that check
// and that the refusal names the setting or the field in its own words.
package attachtest

import (
	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// BadSetting is a value of one setting that the core refuses.
type BadSetting struct {
	Name    string
	Setting attach.Setting
	// Input has the one bad value set; the rest is left out.
	Input attach.Input
	// Entry is the entry of a list setting the refusal names (pastaArgs),
	// -1 for the setting as a whole.
	Entry int
	// Why is in the refusal's words.
	Why string
}

func ptr[T any](v T) *T { return &v }

// BadSettings returns a bad value of every setting attach.Input carries
// as text (the booleans are refused by each front end's decoding).
func BadSettings() []BadSetting {
	return []BadSetting{
		{"relative dataDir", attach.SettingDataDir, attach.Input{DataDir: "var/lib/pp"}, -1, `"var/lib/pp" is not an absolute path`},
		{"timeout without a unit", attach.SettingTimeout, attach.Input{Timeout: "5"}, -1, "want a Go duration"},
		{"zero timeout", attach.SettingTimeout, attach.Input{Timeout: "0s"}, -1, "must be positive"},
		{"negative timeout", attach.SettingTimeout, attach.Input{Timeout: "-1s"}, -1, "must be positive"},
		{"relative pasta path", attach.SettingPasta, attach.Input{Pasta: "bin/pasta"}, -1, "want an absolute path or a name to look up in PATH"},
		{"pastaArgs outside the allow-list", attach.SettingPastaArgs, attach.Input{PastaArgs: []string{"--mtu", "1400", "-c", "/x"}}, 2, `"-c": option -c (--conf-path) is set by the managed forwarder itself`},
		{"pastaArgs opening the host's loopback", attach.SettingPastaArgs, attach.Input{PastaArgs: []string{"-T", "auto"}}, 0, "use loopbackToHost instead"},
		{"pastaArgs aiming at the host's loopback", attach.SettingPastaArgs, attach.Input{PastaArgs: []string{"-q", "--dns-host=::1"}}, 1, `option --dns-host with value "::1" would aim the container at the host's loopback`},
		{"pastaArgs running a command", attach.SettingPastaArgs, attach.Input{PastaArgs: []string{"sh"}}, 0, "is not an option"},
		{"mapHostLoopback not an address", attach.SettingMapHostLoopback, attach.Input{MapHostLoopback: "host"}, -1, "want one IP address, or an IPv4 and an IPv6 address"},
		{"mapHostLoopback with an empty part", attach.SettingMapHostLoopback, attach.Input{MapHostLoopback: "169.254.1.2,"}, -1, "want one IP address"},
		{"mapHostLoopback on loopback", attach.SettingMapHostLoopback, attach.Input{MapHostLoopback: "127.0.0.1"}, -1, "outside the container's loopback"},
		{"mapHostLoopback two of a family", attach.SettingMapHostLoopback, attach.Input{MapHostLoopback: "169.254.1.2, 169.254.1.3"}, -1, "at most one IPv4 address"},
		{"targetAddress not an address", attach.SettingTargetAddress, attach.Input{TargetAddress: "ctr"}, -1, `"ctr" is not an IP address`},
		{"targetAddress with a zone", attach.SettingTargetAddress, attach.Input{TargetAddress: "fe80::1%eth0"}, -1, "zone"},
		{"targetAddress multicast", attach.SettingTargetAddress, attach.Input{TargetAddress: "224.0.0.1"}, -1, "want a unicast address"},
		{"targetAddress unspecified", attach.SettingTargetAddress, attach.Input{TargetAddress: "::"}, -1, "unspecified"},
		{"bindInterface too long", attach.SettingBindInterface, attach.Input{BindInterface: "averyveryverylongname"}, -1, "not an interface name"},
		{"bindInterface with a slash", attach.SettingBindInterface, attach.Input{BindInterface: "a/b"}, -1, "not a valid Linux device name"},
		{"sideInterface with a slash", attach.SettingSideInterface, attach.Input{SideInterface: "a/b"}, -1, "not an interface name"},
		{"sideTable main", attach.SettingSideTable, attach.Input{SideTable: ptr(254)}, -1, "not main 254"},
		{"sideTable zero", attach.SettingSideTable, attach.Input{SideTable: ptr(0)}, -1, "want a table of its own"},
		{"sideNetwork not a prefix", attach.SettingSideNetwork, attach.Input{SideNetwork: "169.254.1.0"}, -1, "want an IPv4 link-local prefix"},
		{"sideNetwork not link-local", attach.SettingSideNetwork, attach.Input{SideNetwork: "10.0.0.0/30"}, -1, "want an IPv4 link-local prefix"},
		{"sideNetwork too small", attach.SettingSideNetwork, attach.Input{SideNetwork: "169.254.1.0/31"}, -1, "16 to 30 bits"},
		{"sideNetwork not unique local", attach.SettingSideNetwork, attach.Input{SideNetwork: "fe80::/64"}, -1, "IPv6 unique local prefix"},
		{"sideNetwork two of a family", attach.SettingSideNetwork, attach.Input{SideNetwork: "169.254.1.0/30,169.254.2.0/30"}, -1, "at most one prefix of each IP version"},
	}
}

// Texts returns the settings in carries as text, by the names of their
// settings (Setting.String), those left empty out: what a front end's
// test writes as its own keys or options. The lists, numbers and
// booleans (PastaArgs, SideTable, Verify...) each front end writes in its
// own way.
func Texts(in attach.Input) map[string]string {
	out := map[string]string{}
	for s, v := range map[attach.Setting]string{
		attach.SettingDataDir: in.DataDir, attach.SettingTimeout: in.Timeout, attach.SettingPasta: in.Pasta,
		attach.SettingMapHostLoopback: in.MapHostLoopback, attach.SettingTargetAddress: in.TargetAddress,
		attach.SettingBindInterface: in.BindInterface, attach.SettingSideInterface: in.SideInterface,
		attach.SettingSideNetwork: in.SideNetwork,
	} {
		if v != "" {
			out[s.String()] = v
		}
	}
	return out
}

// BadMapping is a port mapping the core refuses, the second of a list
// whose first is good.
type BadMapping struct {
	Name    string
	Mapping attach.Mapping
	Field   attach.Field
	Why     string
}

// Good is the first mapping of every list BadMappings' tests send.
var Good = attach.Mapping{HostPort: 1, ContainerPort: 1, Protocols: []string{"tcp"}}

// BadMappings returns a bad value of every field of a port mapping.
// Those with a range or more than one protocol need a front end whose
// input can say so (netavark's).
func BadMappings() []BadMapping {
	tcp := []string{"tcp"}
	return []BadMapping{
		{"host port 0", attach.Mapping{HostPort: 0, ContainerPort: 80, Protocols: tcp}, attach.FieldHostPort, "port out of range: 0 is not in 1..65535"},
		{"host port 65536", attach.Mapping{HostPort: 65536, ContainerPort: 80, Protocols: tcp}, attach.FieldHostPort, "port out of range: 65536 is not in 1..65535"},
		{"container port 0", attach.Mapping{HostPort: 80, ContainerPort: 0, Protocols: tcp}, attach.FieldContainerPort, "0 is not in 1..65535"},
		{"container port 70000", attach.Mapping{HostPort: 80, ContainerPort: 70000, Protocols: tcp}, attach.FieldContainerPort, "70000 is not in 1..65535"},
		{"sctp", attach.Mapping{HostPort: 80, ContainerPort: 80, Protocols: []string{"sctp"}}, attach.FieldProtocol, `unsupported protocol "sctp": the forwarder forwards TCP and UDP only`},
		{"no protocol at all", attach.Mapping{HostPort: 80, ContainerPort: 80, Protocols: []string{"bogus"}}, attach.FieldProtocol, `unsupported protocol "bogus"`},
		{"host IP a name", attach.Mapping{HostIP: "localhost", HostPort: 80, ContainerPort: 80, Protocols: tcp}, attach.FieldHostIP, `"localhost" is not an IP address`},
		{"host IP with a zone", attach.Mapping{HostIP: "fe80::1%eth0", HostPort: 80, ContainerPort: 80, Protocols: tcp}, attach.FieldHostIP, "has a zone"},
		{"host IP multicast", attach.Mapping{HostIP: "224.0.0.1", HostPort: 80, ContainerPort: 80, Protocols: tcp}, attach.FieldHostIP, "multicast or broadcast address, which a listener cannot bind"},
		{"host range past 65535", attach.Mapping{HostPort: 65535, ContainerPort: 80, Range: 2, Protocols: tcp}, attach.FieldHostPort, "65535 with range 2: the last port would be 65536, past 65535"},
		{"container range past 65535", attach.Mapping{HostPort: 80, ContainerPort: 65000, Range: 1000, Protocols: tcp}, attach.FieldContainerPort, "65000 with range 1000: the last port would be 65999"},
		{"negative range", attach.Mapping{HostPort: 80, ContainerPort: 80, Range: -1, Protocols: tcp}, attach.FieldRange, "range -1: want 1 to 65535 ports"},
		{"huge range", attach.Mapping{HostPort: 1, ContainerPort: 1, Range: 70000, Protocols: tcp}, attach.FieldRange, "range 70000"},
		{"sctp beside tcp", attach.Mapping{HostPort: 80, ContainerPort: 80, Protocols: []string{"tcp", "sctp"}}, attach.FieldProtocol, `unsupported protocol "sctp"`},
		{"an empty protocol in a list", attach.Mapping{HostPort: 80, ContainerPort: 80, Protocols: []string{"tcp", ""}}, attach.FieldProtocol, "an empty name among"},
	}
}
