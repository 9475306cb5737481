package attach

import "strconv"

// Setting is one of the core's settings, named apart from any front end:
// the core's errors say which setting is at fault, and each front end's
// Dialect says how its users write it (a CNI configuration key, a netavark
// network option), or that its users have no such setting.
type Setting int

// The settings the core's own errors name.
const (
	SettingDataDir      Setting = iota + 1 // records and managed forwarders' files
	SettingPasta                           // the managed forwarder's binary
	SettingSocket                          // the control socket of a forwarder started elsewhere
	SettingAllowChained                    // a managed forwarder as a second network
)

var settingNames = map[Setting]string{
	SettingDataDir: "dataDir", SettingPasta: "pasta", SettingSocket: "socket", SettingAllowChained: "allowChained",
}

// String is the setting's neutral name, for logs and tests.
func (s Setting) String() string {
	if n, ok := settingNames[s]; ok {
		return n
	}
	return "setting " + strconv.Itoa(int(s))
}

// Dialect is how a front end's input names what the core's messages talk
// about, so that every refusal names what the user wrote: Describe renders
// the core's errors with it.
type Dialect interface {
	// Key is setting s as written in the front end's input ("dataDir"),
	// or "" when its users have no such setting.
	Key(s Setting) string
	// Noun is what the input calls a setting ("configuration key",
	// "network option").
	Noun() string
	// Mappings names the input's list of port mappings ("portMappings",
	// "port_mappings").
	Mappings() string
}

// neutral is the Dialect of Describe(err, nil): the core's own names.
type neutral struct{}

func (neutral) Key(s Setting) string { return s.String() }
func (neutral) Noun() string         { return "setting" }
func (neutral) Mappings() string     { return "portMappings" }

// settingPhrase names s for a message: "configuration key dataDir".
func settingPhrase(d Dialect, s Setting) string {
	k := d.Key(s)
	if k == "" {
		k = s.String()
	}
	return d.Noun() + " " + k
}
