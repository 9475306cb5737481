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
// that stops Podman from holding them.
func explainHolders(err error) error {
	var se *ctlclient.StatusError
	if err == nil || !errors.As(err, &se) || se.Result == nil || len(se.Result.Failed) == 0 {
		return err
	}
	var notes []string
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
			if herr != nil || len(hs) == 0 {
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
		return err
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
