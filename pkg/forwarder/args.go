package forwarder

import (
	"fmt"
	"strings"
)

// reservedOptions are pasta options this package sets itself (or that
// would break how it finds and talks to pasta). cfg.Args may not hold
// them, in their long, short or "--opt=value" forms.
var reservedOptions = map[string]string{
	"-c": "--conf-path", "--conf-path": "--conf-path",
	"-P": "--pid", "--pid": "--pid",
	"-l": "--log-file", "--log-file": "--log-file",
	"-f": "--foreground", "--foreground": "--foreground",
	"--netns": "--netns", "--runas": "--runas",
	"--config-net": "--config-net",
	"--userns":     "--userns",
	"-F":           "--fd", "--fd": "--fd",
}

// checkArgs refuses extra arguments that clash with the ones this package
// sets, naming the offending entry.
func checkArgs(args []string) error {
	for i, a := range args {
		name := a
		if strings.HasPrefix(a, "--") {
			name, _, _ = strings.Cut(a, "=")
		} else if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name = a[:2] // "-cPATH"
		}
		if long, ok := reservedOptions[name]; ok {
			return fmt.Errorf("pastaArgs[%d] %q: option %s is set by the managed forwarder itself", i, a, long)
		}
	}
	return nil
}

// hasOption reports whether args hold one of the given options, alone or
// as "--opt=value" / "-oVALUE".
func hasOption(args []string, names ...string) bool {
	for _, a := range args {
		for _, n := range names {
			if a == n || (strings.HasPrefix(n, "--") && strings.HasPrefix(a, n+"=")) ||
				(len(n) == 2 && n[0] == '-' && len(a) > 2 && strings.HasPrefix(a, n)) {
				return true
			}
		}
	}
	return false
}

// buildArgs returns pasta's arguments (without the binary) for a managed
// forwarder: network configuration copied into the namespace (pasta's
// default, with --config-net so that pasta configures the interface
// itself), a control socket, a PID file and a log file, no inbound port
// forwarding (the plugin adds the container's mappings through the
// socket), outbound forwarding from the namespace's loopback (-T, -U)
// left at pasta's default. euid is the caller's effective uid: as root,
// pasta would drop to "nobody" and could not join the namespace, so it
// runs as root (--runas 0). Rootless, pasta keeps the caller's uid and
// needs no --runas.
func buildArgs(cfg Config, inst Instance, euid int) []string {
	args := []string{"--config-net",
		"-c", inst.Socket,
		"-P", inst.PIDFile,
		"-l", inst.LogFile,
	}
	if euid == 0 {
		args = append(args, "--runas", "0")
	}
	if !hasOption(cfg.Args, "-t", "--tcp-ports") {
		args = append(args, "-t", "none")
	}
	if !hasOption(cfg.Args, "-u", "--udp-ports") {
		args = append(args, "-u", "none")
	}
	if cfg.IfName != "" && !hasOption(cfg.Args, "-I", "--ns-ifname") {
		args = append(args, "-I", cfg.IfName)
	}
	args = append(args, cfg.Args...)
	// --netns last: pasta takes a trailing PID or command otherwise.
	return append(args, "--netns", cfg.NetNS)
}

// optionValue returns the value of the last of the given options in args
// ("-I NAME", "-INAME", "--ns-ifname NAME", "--ns-ifname=NAME").
func optionValue(args []string, short, long string) (string, bool) {
	val, found := "", false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == short || a == long) && i+1 < len(args):
			val, found = args[i+1], true
			i++
		case strings.HasPrefix(a, long+"="):
			val, found = a[len(long)+1:], true
		case len(a) > len(short) && strings.HasPrefix(a, short) && !strings.HasPrefix(a, "--"):
			val, found = a[len(short):], true
		}
	}
	return val, found
}

// nsIfName is the name of the interface pasta makes in the namespace:
// -I in cfg.Args, else cfg.IfName ("" when pasta picks it).
func nsIfName(cfg Config) string {
	if v, ok := optionValue(cfg.Args, "-I", "--ns-ifname"); ok {
		return v
	}
	return cfg.IfName
}
