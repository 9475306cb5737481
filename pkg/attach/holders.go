package attach

import (
	"errors"
	"fmt"
	"strings"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// maxHolderPorts bounds the ports whose holders a failure looks up.
const maxHolderPorts = 8

// explainHolders adds to an update whose host ports did not listen who
// holds those ports (in the caller's network namespace, where a managed
// forwarder binds them), and, when that is Podman's conmon, the setting
// that stops Podman from holding them. Ports that nobody holds are named
// as such: pasta stops at the first port it cannot bind, so the free
// ports after a taken one did not listen either.
func explainHolders(err error) error {
	var se *ctlclient.StatusError
	if err == nil || !errors.As(err, &se) || se.Result == nil || len(se.Result.Failed) == 0 {
		return err
	}
	var notes, unheld []string
	podmanHolds := false
	looked := 0
	for _, f := range se.Result.Failed {
		if f.Pif != wire.PifHost {
			continue
		}
		for _, port := range f.Ports {
			if looked == maxHolderPorts {
				break
			}
			looked++
			hs, herr := procnet.PortHolders(f.Rule.Proto == wire.ProtoUDP, port)
			if herr != nil {
				continue
			}
			if len(hs) == 0 {
				unheld = append(unheld, fmt.Sprintf("%d/%s", port, f.Rule.Proto))
				continue
			}
			var who []string
			for _, h := range hs {
				who = append(who, h.String())
				podmanHolds = podmanHolds || h.Comm == "conmon" || h.Comm == "podman"
			}
			notes = append(notes, fmt.Sprintf("host port %d/%s is held by %s", port, f.Rule.Proto, strings.Join(who, ", ")))
		}
	}
	if len(notes) == 0 {
		// Only when some port is held: one that is taken explains why
		// the ports after it were not even tried.
		return err
	}
	if len(unheld) > 0 {
		notes = append(notes, fmt.Sprintf("no holder found for host port %s: pasta stops binding at the first port that fails, so it may not have tried it", strings.Join(unheld, ", ")))
	}
	note := strings.Join(notes, "; ")
	if podmanHolds {
		// The holder may be another Podman than the one running this
		// ADD, if any: name both places the setting may live.
		note += "; Podman reserves the published ports of its containers (enable_port_reservation, on by default): " + podman.ReservationFix("") +
			" (or in the file CONTAINERS_CONF names, where that is set)"
	}
	return &annotated{Err: err, Note: note}
}
