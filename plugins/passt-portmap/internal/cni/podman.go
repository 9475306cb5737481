package cni

import (
	"os"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
)

// refusePodmanReservation refuses (code 7) an ADD with port mappings that
// a rootful Podman runs while it reserves the published ports itself
// (podman.CheckReservation): refusing here names the cause whichever
// order Podman binds in. When Podman's configuration cannot be read the
// ADD goes on (with a warning) and the listener check names the holder.
func (p *Plugin) refusePodmanReservation(cfg *Config) error {
	if len(cfg.Mappings) == 0 {
		return nil
	}
	refuse, warn := podman.Verdict(podman.CheckReservation(procnet.Root, os.Getpid(), "/", os.Getenv))
	if warn != nil {
		p.core().Warn(warn.Error())
	}
	return refuse // the core describes it (bad configuration, 7)
}
