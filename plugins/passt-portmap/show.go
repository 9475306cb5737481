package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
)

// show prints a forwarder's tables in pesto's notation, each rule with
// its listening state, for a person running "passt-portmap show SOCKET".
func show(ctx context.Context, w io.Writer, c *ctlclient.Client) error {
	socket := c.Path
	if forwarderGone(socket) {
		return fmt.Errorf("no forwarder listens at %s", socket)
	}
	snap, err := c.Read(ctx)
	if err != nil {
		return err
	}
	var all []ctlclient.PifRule
	for _, t := range snap.Tables {
		for _, r := range t.Rules {
			all = append(all, ctlclient.PifRule{Pif: t.Name(), Rule: r})
		}
	}
	v, err := c.Verify(ctx, all)
	if err != nil {
		return err
	}
	state := map[string]string{}
	k := func(pif string, r wire.Rule) string { return pif + "\x00" + string(r.Append(nil)) }
	for _, f := range append(append([]ctlclient.RuleFailure(nil), v.NotListening...), v.Warnings...) {
		s := "NOT LISTENING on " + portList(f.Ports)
		if f.BlockedBy != nil {
			// The forwarder binds no rule after the first that fails.
			s += ", blocked by the failing rule " + strings.TrimSpace(f.BlockedBy.Rule.String())
		}
		state[k(f.Pif, f.Rule)] = s
	}
	for _, u := range v.Unchecked {
		state[k(u.Pif, u.Rule)] = "not checked (listens inside the namespace)"
	}
	for _, m := range v.Missing {
		state[k(m.Pif, m.Rule)] = "gone since read"
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
			s, ok := state[k(t.Name(), r)]
			switch {
			case ok:
			case r.Flags.Has(wire.FlagScan):
				s = "auto-scan, not checked"
			case v.Method == ctlclient.VerifyNone:
				s = "not checked"
			case r.Flags.Has(wire.FlagWeak):
				s = "listening (best effort: on some ports at least)"
			default:
				s = "listening"
			}
			fmt.Fprintf(w, "    %-*s   %s\n", width, strings.TrimRight(r.String(), " "), s)
		}
	}
	return nil
}
