package cni

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
)

// podmanDepth is how far up the process chain a podman process is looked
// for: libcni runs the plugin as its direct child, a wrapper adds a level.
const podmanDepth = 4

// refusePodmanReservation refuses (code 7) an ADD with port mappings that
// a rootful Podman runs while it reserves the published ports itself.
// Podman then binds the same host ports as the forwarder, and whichever
// binds second fails: Podman 4 without a user namespace binds after this
// ADD and fails with its own "address already in use", which names
// neither the plugin nor the setting; with a user namespace (and from
// Podman 5.3 on) it binds before, and the forwarder's ports would not
// listen. Refusing here names the cause in both orders. Rootless Podman
// reserves nothing; when Podman's configuration cannot be read the ADD
// goes on (with a warning) and the listener check names the holder.
func (p *Plugin) refusePodmanReservation(cfg *Config) error {
	if len(cfg.Mappings) == 0 {
		return nil
	}
	pm, ok := podman.Ancestor(procnet.Root, os.Getpid(), podmanDepth)
	if !ok {
		return nil
	}
	if userns, err := podman.InUserNamespace(procnet.Root); err != nil || userns {
		return nil
	}
	r, err := podman.PortReservation("/", os.Getenv)
	if err != nil {
		p.core().Warn(fmt.Sprintf("cannot tell whether Podman (pid %d) reserves the published ports: %v", pm.PID, err))
		return nil
	}
	if !r.Enabled {
		return nil
	}
	from := "Podman's default"
	if r.Source != "" {
		from = "set in " + r.Source
	}
	return types.NewError(codeBadConfig,
		"Podman reserves the published host ports itself: set enable_port_reservation = false",
		fmt.Sprintf("passt-portmap runs under Podman (pid %d), whose port reservation is on (%s): Podman binds every published host port in its own process and keeps it open in conmon, and the forwarder has to bind the same ports, so whichever binds second fails (Podman 4 without a user namespace would report \"cannot listen on the TCP port ... address already in use\" after this ADD); %s",
			pm.PID, from, podman.ReservationFix(r.Only)))
}
