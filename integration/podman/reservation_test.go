package podman_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
)

// TestPodmanReservationRefused: with Podman's default port reservation,
// "podman run -p" on a passt-portmap network fails with an error that
// names the cause and the setting, in both orders Podman 4.3.1 binds in:
// after the plugin's ADD (no user namespace) and before it (--uidmap: the
// port is held when the plugin runs). Nothing is left behind and the port
// is free again.
func TestPodmanReservationRefused(t *testing.T) {
	p := newPodman(t, config{reservation: true})
	p.network("pp", p.managed())
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"reservation after ADD", nil},
		{"reservation before ADD", []string{"--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := pastatest.FreePort(t, "tcp")
			name := fmt.Sprintf("refused-%d", port)
			args := runArgs(name, "pp", append(tc.extra, "-p", fmt.Sprintf("%d:80", port))...)
			out, err := p.run(args...)
			if err == nil {
				t.Fatalf("podman run with the reservation on succeeded:\n%s", out)
			}
			t.Logf("podman run: %v:\n%s", err, out)
			mustMention(t, "podman's error", out, "passt-portmap", "Podman reserves the published host ports itself",
				"enable_port_reservation = false", "in "+p.conf+" (CONTAINERS_CONF")
			p.must("rm", "--force", "--time", "0", name)
			runtimetest.NothingLeft(t, p.dataDir)
			mustBindable(t, port)
		})
	}
}

// TestPodmanPortHeldByConmon: when the plugin's ports are taken anyway
// (here by another container's reservation: conmon holds the port), the
// ADD fails with 101 and its message names the holder, conmon, and the
// setting that stops Podman from holding ports.
func TestPodmanPortHeldByConmon(t *testing.T) {
	port := pastatest.FreePort(t, "tcp")
	// A container on a network without any port forwarding, under a
	// Podman that reserves: conmon holds the port for it.
	holder := newPodman(t, config{reservation: true})
	holder.network("plain", `{"type": "loopback"}`)
	holder.must(runArgs("holder", "plain", "-p", fmt.Sprintf("%d:80", port))...)
	hs, err := procnet.PortHolders(false, port)
	if err != nil || len(hs) == 0 || hs[0].Comm != "conmon" {
		t.Fatalf("holders of port %d: %v, %v; want conmon", port, hs, err)
	}

	p := newPodman(t, config{})
	p.network("pp", p.managed())
	out, err := p.run(runArgs("late", "pp", "-p", fmt.Sprintf("%d:80", port))...)
	if err == nil {
		t.Fatalf("podman run on a port conmon holds succeeded:\n%s", out)
	}
	t.Logf("podman run: %v:\n%s", err, out)
	mustMention(t, "podman's error", out, "host ports could not listen",
		fmt.Sprintf("host port %d/TCP is held by conmon (pid %d)", port, hs[0].PID), "enable_port_reservation = false", "containers.conf.d")
	p.must("rm", "--force", "--time", "0", "late")
	runtimetest.NothingLeft(t, p.dataDir)
}

// mustBindable fails unless the dual-stack wildcard can bind port.
func mustBindable(t *testing.T, port uint16) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatalf("port %d after the failed run: %v", port, err)
	}
	l.Close()
}
