// Command passt-portmap is a CNI plugin that forwards a container's ports
// through a passt/pasta forwarder's control socket (or a pasta it starts
// itself), one transaction per update, with ownership records that make
// ADD idempotent and DEL, CHECK and GC exact.
//
// Run by hand: "passt-portmap --version", and "passt-portmap show SOCKET"
// to print a forwarder's tables with each rule's listening state.
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
	skel.PluginMainFuncs(p.Funcs(), version.All, about())
}

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
		fmt.Println("CNI versions:", strings.Join(version.All.SupportedVersions(), ", "))
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
