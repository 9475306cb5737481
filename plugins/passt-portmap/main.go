// Command passt-portmap forwards a container's ports through a
// passt/pasta forwarder's control socket (or a pasta it starts itself),
// one transaction per update, with ownership records that make adding
// idempotent and deleting, checking and garbage collection exact.
//
// One binary, several front ends over one core (pkg/attach): it speaks
// CNI when CNI_COMMAND is set (internal/cni), netavark's plugin API when
// its first argument is create, setup, teardown or info (internal/netavark:
// Podman 5 and 6 run it as the network driver "passt-portmap"), and
// otherwise runs the commands for a person (internal/cli). main only
// dispatches.
//
// CNI configuration (unknown keys are ignored, a key left out or empty
// takes the default; the core reads and checks the settings, as it does
// the netavark options: a wrong type or value is error 7 naming the key):
//
//	socket         control socket path; ${CNI_CONTAINERID}, ${CNI_IFNAME} and
//	               ${CNI_NETNS} (its base name) are expanded; CNI_ARGS
//	               PASST_SOCKET=PATH overrides it for one call. Absent (or
//	               "forwarder": "managed"): the plugin starts pasta itself.
//	pidFile        PID file of a forwarder started with -P (same placeholders)
//	weak           bool: bind failures tolerated (flag 0x02)
//	targetAddress  container-side address to forward to
//	bindInterface  interface to bind the listeners to
//	timeout        Go duration, default 5s: forwarder, lock and pasta start
//	dataDir        records/ and forwarders/; default /var/lib/cni/passt-portmap,
//	               rootless $XDG_RUNTIME_DIR/passt-portmap (attach.DefaultDataDir)
//	verify         bool, default true: check listeners after each update
//	pasta, pastaArgs, allowChained   managed forwarder (pkg/forwarder)
//	mapHostLoopback, loopbackToHost  managed: open the host's loopback (closed by default)
//	sideInterface, sideTable, sideNetwork  chained: the side interface
//	runtimeConfig.portMappings       hostPort, containerPort, protocol, hostIP
//
// CNI errors (CNI error JSON, code, msg, details), numbered by the core's
// one table (attach.Kind.Code), which gives the netavark driver's exit
// status too (1 for what cannot be named, where CNI says 999):
//
//	100  safe fail: the forwarder rejected the update, nothing changed (which entry, why)
//	101  socket fail: host ports could not listen, rolled back (which ports)
//	102  rollback fail, or only partly in effect: state unknown (what is active now)
//	103  protocol mismatch or undecodable stream (announced vs supported)
//	104  CHECK: owned rules missing or not listening, or managed pasta not running (which)
//	11   forwarder unreachable, or busy past the timeout; record lock busy (socket, last error)
//	7    bad configuration or mapping (the key, or runtimeConfig.portMappings[i].FIELD)
//	50   STATUS: not ready (forwarder, pasta binary or data directory, and why)
//	5    an ownership record that cannot be read (its path)
//
// Run by hand: "passt-portmap --version", "passt-portmap --help", and
// "passt-portmap show SOCKET [PIDFILE]" to print a forwarder's tables in
// pesto's notation with each rule's listening state.
package main

import (
	"os"
	"strings"

	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/cli"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/cni"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/netavark"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" && netavark.IsCommand(os.Args[1]) {
		os.Exit(netavark.Main(os.Args[1:]))
	}
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr, versions()))
	}
	cni.Main(os.Stdout, os.Stderr)
}

// versions are the lines "--version" prints: the same version as CNI's
// about line and netavark's info.
func versions() []string {
	return []string{"passt-portmap " + version.Current().Describe(),
		"CNI versions: " + strings.Join(cni.SupportedVersions.SupportedVersions(), ", "),
		"netavark plugin API version: " + netavark.APIVersion}
}
