package attach

import (
	"fmt"
	"strconv"
)

// Setting is one of the core's settings, named apart from any front end:
// the core's errors say which setting is at fault, and each front end's
// Dialect says how its users write it (a CNI configuration key, a netavark
// network option), or that its users have no such setting.
type Setting int

// The settings. Their neutral names (String) are the CNI configuration's
// keys, which the netavark options share.
const (
	SettingDataDir         Setting = iota + 1 // records and managed forwarders' files
	SettingPasta                              // the managed forwarder's binary
	SettingSocket                             // the control socket of a forwarder started elsewhere
	SettingAllowChained                       // a managed forwarder as a second network
	SettingPastaArgs                          // extra arguments of the managed forwarder
	SettingMapHostLoopback                    // addresses that reach the host's loopback
	SettingLoopbackToHost                     // the container's loopback ports to the host's
	SettingTargetAddress                      // the container-side address to forward to
	SettingBindInterface                      // the host interface the listeners bind to
	SettingTimeout                            // bound of each blocking step
	SettingWeak                               // bind failures tolerated
	SettingVerify                             // listeners checked after each update
	SettingSideInterface                      // chained: the side interface's name
	SettingSideTable                          // chained: the routing table of its replies
	SettingSideNetwork                        // chained: its networks
)

var settingNames = map[Setting]string{
	SettingDataDir: "dataDir", SettingPasta: "pasta", SettingSocket: "socket", SettingAllowChained: "allowChained",
	SettingPastaArgs: "pastaArgs", SettingMapHostLoopback: "mapHostLoopback", SettingLoopbackToHost: "loopbackToHost",
	SettingTargetAddress: "targetAddress", SettingBindInterface: "bindInterface", SettingTimeout: "timeout",
	SettingWeak: "weak", SettingVerify: "verify",
	SettingSideInterface: "sideInterface", SettingSideTable: "sideTable", SettingSideNetwork: "sideNetwork",
}

// Settings returns every setting, in their order.
func Settings() []Setting {
	out := make([]Setting, 0, len(settingNames))
	for s := SettingDataDir; s <= SettingSideNetwork; s++ {
		out = append(out, s)
	}
	return out
}

// String is the setting's neutral name, for logs and tests.
func (s Setting) String() string {
	if n, ok := settingNames[s]; ok {
		return n
	}
	return "setting " + strconv.Itoa(int(s))
}

// Field is a field of a port mapping; FieldNone is the mapping as a
// whole.
type Field int

// The fields of a port mapping.
const (
	FieldNone Field = iota
	FieldHostPort
	FieldContainerPort
	FieldProtocol
	FieldHostIP
	FieldRange
)

var fieldNames = [...]string{"", "hostPort", "containerPort", "protocol", "hostIP", "range"}

// String is the field's neutral name (the CNI mapping's key).
func (f Field) String() string {
	if f >= 0 && int(f) < len(fieldNames) {
		return fieldNames[f]
	}
	return "field " + strconv.Itoa(int(f))
}

// Dialect is how a front end's input names what the core's messages talk
// about, so that every refusal names what the user wrote: Describe renders
// the core's errors with it.
type Dialect interface {
	// Setting is where setting s is in the front end's input ("dataDir",
	// "network.options.dataDir"), or "" when its users have no such
	// setting.
	Setting(s Setting) string
	// Mapping is where field f of the i-th port mapping is in the input
	// ("runtimeConfig.portMappings[2].hostPort",
	// "port_mappings[2].host_port"); FieldNone names the entry.
	Mapping(i int, f Field) string
	// Mappings names the input's list of port mappings ("portMappings",
	// "port_mappings").
	Mappings() string
	// Locate puts a place in the input, as Setting or Mapping give it or
	// as the front end names one of its own keys, into a message
	// ("configuration key dataDir", "network.options.dataDir").
	Locate(place string) string
}

// neutral is the Dialect of Describe(err, nil): the core's own names.
type neutral struct{}

func (neutral) Setting(s Setting) string { return s.String() }
func (neutral) Mapping(i int, f Field) string {
	if f == FieldNone {
		return fmt.Sprintf("portMappings[%d]", i)
	}
	return fmt.Sprintf("portMappings[%d].%s", i, f)
}
func (neutral) Mappings() string           { return "portMappings" }
func (neutral) Locate(place string) string { return place }

// settingName is where s is in the front end's input; a setting it has
// no name for goes by its neutral name.
func settingName(d Dialect, s Setting) string {
	if k := d.Setting(s); k != "" {
		return k
	}
	return s.String()
}

// settingPhrase names s for a message: "configuration key dataDir".
func settingPhrase(d Dialect, s Setting) string { return d.Locate(settingName(d, s)) }
