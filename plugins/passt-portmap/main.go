// Command passt-portmap is a CNI plugin that forwards a container's ports
// through a passt/pasta forwarder's control socket (or a pasta it starts
// itself), one transaction per update, with ownership records that make
// ADD idempotent and DEL, CHECK and GC exact.
//
// Configuration (unknown keys are ignored; a wrong type or value is error
// 7 naming the key):
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
//	dataDir        default /var/lib/cni/passt-portmap: records/ and forwarders/
//	verify         bool, default true: check listeners after each update
//	pasta, pastaArgs, allowChained   managed forwarder (pkg/forwarder)
//	mapHostLoopback, loopbackToHost  managed: open the host's loopback (closed by default)
//	runtimeConfig.portMappings       hostPort, containerPort, protocol, hostIP
//
// Errors (CNI error JSON, code, msg, details):
//
//	100  safe fail: the forwarder rejected the update, nothing changed (which entry, why)
//	101  socket fail: host ports could not listen, rolled back (which ports)
//	102  rollback fail, or only partly in effect: state unknown (what is active now)
//	103  protocol mismatch or undecodable stream (announced vs supported)
//	104  CHECK: owned rules missing or not listening, or managed pasta not running (which)
//	11   forwarder unreachable, or busy past the timeout; record lock busy (socket, last error)
//	7    bad configuration or mapping (key or entry)
//	50   STATUS: not ready (forwarder, pasta binary or data directory, and why)
//	5    an ownership record that cannot be read (its path)
//
// Run by hand: "passt-portmap --version", and "passt-portmap show SOCKET
// [PIDFILE]" to print a forwarder's tables in pesto's notation with each
// rule's listening state.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
)

func main() {
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(command(os.Args[1:]))
	}
	p := &Plugin{Stdout: os.Stdout, Stderr: os.Stderr}
	skel.PluginMainFuncs(p.Funcs(), supportedVersions, about())
}

// supportedVersions are the CNI versions the plugin speaks: every one
// whose result can be empty (0.1.0 and 0.2.0 need an IP address in every
// result, which a plugin alone in its list has none of). STATUS and GC
// exist from 1.1.0 on; skel refuses them for older configurations.
var supportedVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

func about() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "CNI plugin passt-portmap " + v
}

// command runs the subcommands for a person and returns the exit status.
func command(args []string) int {
	switch {
	case args[0] == "--version" || args[0] == "version":
		fmt.Println(about())
		fmt.Println("CNI versions:", strings.Join(supportedVersions.SupportedVersions(), ", "))
		fmt.Println("control protocol versions:", fmt.Sprint(wire.SupportedVersions))
		return 0
	case args[0] == "show" && (len(args) == 2 || len(args) == 3):
		pidFile := ""
		if len(args) == 3 {
			pidFile = args[2]
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		if err := show(ctx, os.Stdout, &ctlclient.Client{Path: args[1], PIDFile: pidFile}); err != nil {
			fmt.Fprintln(os.Stderr, "passt-portmap:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: passt-portmap --version | show SOCKET [PIDFILE]\n(run by a CNI runtime, it reads CNI_COMMAND and its configuration from stdin)")
	return 2
}
