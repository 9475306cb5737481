package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
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
	for _, f := range v.NotListening {
		state[k(f.Pif, f.Rule)] = "NOT LISTENING on " + portList(f.Ports)
	}
	for _, f := range v.Warnings {
		state[k(f.Pif, f.Rule)] = "NOT LISTENING on " + portList(f.Ports)
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
			case r.Flags.Has(wire.FlagWeak):
				s = "best effort, not checked"
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
