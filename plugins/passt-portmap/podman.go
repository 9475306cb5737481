package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
)

// podmanDepth is how far up the process chain a podman process is looked
// for: libcni runs the plugin as its direct child, a wrapper adds a level.
const podmanDepth = 4

// dropIn is the file the error messages suggest for Podman's setting.
const dropIn = "/etc/containers/containers.conf.d/50-passt-portmap.conf"

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
		p.warnf("cannot tell whether Podman (pid %d) reserves the published ports: %v", pm.PID, err)
		return nil
	}
	if !r.Enabled {
		return nil
	}
	from := "Podman's default"
	if r.Source != "" {
		from = "set in " + r.Source
	}
	return types.NewError(CodeBadConfig,
		"Podman reserves the published host ports itself: set enable_port_reservation = false",
		fmt.Sprintf("passt-portmap runs under Podman (pid %d), whose port reservation is on (%s): Podman binds every published host port in its own process and keeps it open in conmon, and the forwarder has to bind the same ports, so whichever binds second fails (Podman 4 without a user namespace would report \"cannot listen on the TCP port ... address already in use\" after this ADD); %s",
			pm.PID, from, reservationFix(r.Only)))
}

// reservationFix says where to turn Podman's port reservation off.
func reservationFix(only string) string {
	where := "in a drop-in such as " + dropIn
	if only != "" {
		where = "in " + only + " (CONTAINERS_CONF: the only file Podman reads now)"
	}
	return "put \"[engine]\" and \"enable_port_reservation = false\" " + where +
		"; it holds for every container of that Podman, bridge networks included (their ports are then not reserved either)"
}

// maxHolderPorts bounds the ports whose holders a failure looks up.
const maxHolderPorts = 8

// explainHolders adds to an update whose host ports did not listen who
// holds those ports (in the plugin's network namespace, where a managed
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
		note += "; Podman reserves the published ports of its containers (enable_port_reservation, on by default): " + reservationFix("") +
			" (or in the file CONTAINERS_CONF names, where that is set)"
	}
	return &annotated{Err: err, Note: note}
}

// beforeAdd is what an ADD does for the runtimes' sake before its own
// work: refuse under a Podman that reserves the ports itself, and release
// forwarders whose namespace a runtime removed without a DEL.
func (p *Plugin) beforeAdd(cfg *Config, args *skel.CmdArgs) error {
	if err := p.refusePodmanReservation(cfg); err != nil {
		return err
	}
	p.reapOrphans(cfg, keyOf(cfg, args))
	return nil
}
