package netavark

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// optionSettings are the core's settings that a network has as options
// ("podman network create -o KEY=VALUE"), each by its neutral name: those
// that make sense for a network whose pasta the plugin always starts
// itself. A forwarder started elsewhere (socket), a second network
// (allowChained) and a chained pod's side have none.
var optionSettings = []attach.Setting{
	attach.SettingBindInterface, attach.SettingDataDir, attach.SettingLoopbackToHost, attach.SettingMapHostLoopback,
	attach.SettingPasta, attach.SettingPastaArgs, attach.SettingTargetAddress, attach.SettingTimeout,
	attach.SettingVerify, attach.SettingWeak,
}

// optionOf returns the setting of option key.
func optionOf(key string) (attach.Setting, bool) {
	i := slices.IndexFunc(optionSettings, func(s attach.Setting) bool { return s.String() == key })
	if i < 0 {
		return 0, false
	}
	return optionSettings[i], true
}

// ParseOptions reads a network's options: it decodes each value from its
// string (booleans are those of strconv.ParseBool, pastaArgs a JSON list
// of strings or words separated by spaces) into the core's Input, whose
// Options reads and checks every value as for any front end, with the
// core's defaults. An empty value is the default, as an option left out.
// Unlike a CNI configuration, an unknown key is an error: it is most
// likely a misspelt one, and create reports it when the network is made,
// not when a container starts. Errors are *attach.ConfigError naming the
// setting.
func ParseOptions(opts map[string]string) (attach.Options, error) {
	var in attach.Input
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad key named is always the same one
	for _, k := range keys {
		s, ok := optionOf(k)
		if !ok {
			names := make([]string, len(optionSettings))
			for i, s := range optionSettings {
				names[i] = s.String()
			}
			return attach.Options{}, fieldErr("network.options."+k, "not an option of the passt-portmap driver (known: %s)", strings.Join(names, ", "))
		}
		if err := setOption(&in, s, opts[k]); err != nil {
			return attach.Options{}, &attach.ConfigError{Setting: s, Err: err}
		}
	}
	return in.Options()
}

// setOption decodes the value v of setting s into in.
func setOption(in *attach.Input, s attach.Setting, v string) error {
	var err error
	switch s {
	case attach.SettingPasta:
		in.Pasta = v
	case attach.SettingPastaArgs:
		in.PastaArgs, err = words(v)
	case attach.SettingDataDir:
		in.DataDir = v
	case attach.SettingTimeout:
		in.Timeout = v
	case attach.SettingTargetAddress:
		in.TargetAddress = v
	case attach.SettingBindInterface:
		in.BindInterface = v
	case attach.SettingMapHostLoopback:
		in.MapHostLoopback = v
	case attach.SettingWeak:
		in.Weak, err = parseBool(v)
	case attach.SettingLoopbackToHost:
		in.LoopbackToHost, err = parseBool(v)
	case attach.SettingVerify:
		if v != "" {
			var b bool
			b, err = parseBool(v)
			in.Verify = &b
		}
	}
	return err
}

// parseBool reads a boolean option; empty is false, the default of the
// boolean options but verify (which setOption leaves out when empty).
func parseBool(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q: want true or false", v)
	}
	return b, nil
}

// words reads pastaArgs: a JSON list of strings when it starts with '[',
// otherwise the words separated by spaces (no quoting).
func words(v string) ([]string, error) {
	t := strings.TrimSpace(v)
	if !strings.HasPrefix(t, "[") {
		return strings.Fields(t), nil
	}
	var out []string
	if err := json.Unmarshal([]byte(t), &out); err != nil {
		return nil, fmt.Errorf("%q: not a JSON list of strings: %w", v, err)
	}
	return out, nil
}
