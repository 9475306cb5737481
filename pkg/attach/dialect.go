package attach

import (
	"fmt"
	"strconv"
	"strings"
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

// placeholders is the Dialect of a description made in one process for a
// front end of another: a leader describing the outcome of an ADD it ran
// for a waiting one (group commit, see queue.go) does not know how the
// waiter's input names things. It leaves marks instead, which the
// waiter's Describe replaces with its own Dialect's names (fill).
type placeholders struct{}

// The marks: \x01 KIND ARG \x02, Locate's around its place with \x03.
const (
	markOpen   = "\x01"
	markClose  = "\x02"
	markLocEnd = "\x03"
)

func (placeholders) Setting(s Setting) string {
	return markOpen + "s" + strconv.Itoa(int(s)) + markClose
}
func (placeholders) Mapping(i int, f Field) string {
	return markOpen + "m" + strconv.Itoa(i) + "." + strconv.Itoa(int(f)) + markClose
}
func (placeholders) Mappings() string { return markOpen + "p" + markClose }
func (placeholders) Locate(place string) string {
	return markOpen + "l" + place + markLocEnd
}

// fill replaces the marks placeholders left in s with d's names. Marks
// that do not parse are left as they are (s did not come from
// placeholders).
func fill(s string, d Dialect) string {
	if !strings.Contains(s, markOpen) {
		return s
	}
	// The names first, then the places made of them.
	var b strings.Builder
	for {
		i := strings.Index(s, markOpen)
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		rest := s[i+1:]
		j := strings.Index(rest, markClose)
		name, ok := "", false
		if j > 0 && rest[0] != 'l' {
			name, ok = fillName(rest[:j], d)
		}
		if !ok {
			b.WriteString(markOpen)
			s = rest
			continue
		}
		b.WriteString(name)
		s = rest[j+1:]
	}
	s = b.String()
	b.Reset()
	for {
		i := strings.Index(s, markOpen+"l")
		j := strings.Index(s[max(i, 0):], markLocEnd)
		if i < 0 || j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(d.Locate(s[i+2 : i+j]))
		s = s[i+j+1:]
	}
}

// fillName is d's name for one mark (its text between the delimiters).
func fillName(m string, d Dialect) (string, bool) {
	switch m[0] {
	case 's':
		n, err := strconv.Atoi(m[1:])
		if err != nil {
			return "", false
		}
		return settingName(d, Setting(n)), true
	case 'm':
		is, fs, ok := strings.Cut(m[1:], ".")
		i, err1 := strconv.Atoi(is)
		f, err2 := strconv.Atoi(fs)
		if !ok || err1 != nil || err2 != nil {
			return "", false
		}
		return d.Mapping(i, Field(f)), true
	case 'p':
		return d.Mappings(), m == "p"
	}
	return "", false
}
