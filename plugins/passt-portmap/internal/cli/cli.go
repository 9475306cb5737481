// Package cli holds passt-portmap's commands for a person: the version,
// and "show", a forwarder's tables with each rule's listening state.
package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Usage is the command line a person may give.
const Usage = "usage: passt-portmap --version | --help | show SOCKET [PIDFILE]\n(run by a CNI runtime, it reads CNI_COMMAND and its configuration from stdin;\nrun by netavark or Podman as a network driver: create | setup NETNS | teardown NETNS | info)"

// help is what --help prints after Usage.
const help = `
  --version             the plugin's version and the versions of the APIs it speaks
  --help                this text
  show SOCKET [PIDFILE] a forwarder's tables (pasta -c SOCKET), each rule with its
                        listening state; PIDFILE (pasta -P) helps find its process

Installed as a CNI plugin (e.g. /opt/cni/bin/passt-portmap) or a netavark
plugin (e.g. /usr/libexec/netavark/passt-portmap): see README.md.`

// Run runs a command and returns the exit status. versions are the lines
// --version prints.
func Run(args []string, stdout, stderr io.Writer, versions []string) int {
	switch {
	case len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help"):
		fmt.Fprintln(stdout, Usage+"\n"+help)
		return 0
	case len(args) > 0 && (args[0] == "--version" || args[0] == "version"):
		for _, v := range versions {
			fmt.Fprintln(stdout, v)
		}
		fmt.Fprintln(stdout, "control protocol versions:", fmt.Sprint(wire.SupportedVersions))
		return 0
	case len(args) > 0 && args[0] == "show" && (len(args) == 2 || len(args) == 3):
		pidFile := ""
		if len(args) == 3 {
			pidFile = args[2]
		}
		ctx, cancel := context.WithTimeout(context.Background(), attach.DefaultTimeout)
		defer cancel()
		if err := Show(ctx, stdout, &ctlclient.Client{Path: args[1], PIDFile: pidFile}); err != nil {
			fmt.Fprintln(stderr, "passt-portmap:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(stderr, Usage)
	return 2
}

// Show prints a forwarder's tables in pesto's notation, each rule with
// its listening state.
func Show(ctx context.Context, w io.Writer, c *ctlclient.Client) error {
	socket := c.Path
	if attach.ForwarderGone(ctx, socket) {
		return fmt.Errorf("no forwarder listens at %s", socket)
	}
	snap, err := c.Read(ctx)
	if err != nil {
		return err
	}
	var all []wire.PifRule
	for _, t := range snap.Tables {
		all = append(all, wire.RulesIn(t.Name(), t.Rules)...)
	}
	v, err := c.Verify(ctx, all)
	if err != nil {
		return err
	}
	state := map[wire.PifRuleKey]string{}
	for _, f := range append(append([]ctlclient.RuleFailure(nil), v.NotListening...), v.Warnings...) {
		s := "NOT LISTENING on " + wire.PortList(f.Ports)
		if f.BlockedBy != nil {
			// The forwarder binds no rule after the first that fails.
			s += ", blocked by the failing rule " + strings.TrimSpace(f.BlockedBy.Rule.String())
		}
		state[f.Key()] = s
	}
	for _, u := range v.Unchecked {
		state[u.Key()] = "not checked (listens inside the namespace)"
	}
	for _, m := range v.Missing {
		state[m.Key()] = "gone since read"
	}
	// Print the tables as verified, which is the newer read.
	tables := v.Tables
	if tables == nil {
		tables = snap.Tables
	}
	fmt.Fprintf(w, "forwarder at %s: protocol version %d, uid %d, listeners checked by %s\n", socket, snap.Hello.Version, snap.PeerUID, v.Method)
	width := 0
	for _, t := range tables {
		for _, r := range t.Rules {
			width = max(width, len(strings.TrimRight(r.String(), " ")))
		}
	}
	for _, t := range tables {
		fmt.Fprintf(w, "%s (pif %d, %s): %d rule(s)\n", t.Name(), t.ID, t.Caps, len(t.Rules))
		for _, r := range t.Rules {
			s, ok := state[wire.PifRule{Pif: t.Name(), Rule: r}.Key()]
			switch {
			case ok:
			case r.Flags.Has(wire.FlagScan):
				s = "auto-scan, not checked"
			case r.Flags.Has(wire.FlagWeak):
				s = "listening (best effort: on some ports at least)"
			case v.Method == ctlclient.VerifyNone:
				s = "not checked"
			default:
				s = "listening"
			}
			fmt.Fprintf(w, "    %-*s   %s\n", width, strings.TrimRight(r.String(), " "), s)
		}
	}
	return nil
}
