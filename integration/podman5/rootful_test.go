package podman5_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// dropIn is the README's drop-in that turns Podman's port reservation off.
const dropIn = "/etc/containers/containers.conf.d/50-passt-portmap.conf"

// reservation turns Podman's port reservation on (its default: no
// drop-in) or off (the README's drop-in).
func (p *podman) reservation(on bool) {
	p.t.Helper()
	if on {
		if err := os.Remove(p.r.path(dropIn)); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.t.Fatal(err)
		}
		return
	}
	if err := p.r.write(dropIn, "[engine]\nenable_port_reservation = false\n", 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// network makes a network with the driver and removes it, and every
// container, when the test ends.
func (p *podman) network(name, driver string, opts ...string) {
	p.t.Helper()
	args := []string{"network", "create", "-d", driver}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	p.must(append(args, name)...)
	p.t.Cleanup(func() {
		if out, err := p.run("rm", "--all", "--force", "--time", "0"); err != nil {
			p.t.Errorf("cleanup: podman rm: %v: %s", err, out)
		}
		if out, err := p.run("network", "rm", "--force", name); err != nil {
			p.t.Errorf("cleanup: podman network rm: %v: %s", err, out)
		}
	})
}

// TestRootful: rootful Podman 5 with the README's drop-in
// (enable_port_reservation = false) and a network of the driver: TCP,
// UDP, a range, hostIP "" answering on 127.0.0.1 and [::1], a hostIP of
// each family, `podman port`, `network inspect`, restart, stop, start, a
// second container, `network reload`, and nothing left after rm.
func TestRootful(t *testing.T) {
	p := rootful(t)
	p.reservation(false)
	mustMention(t, "podman info", p.must("info", "--format", "{{.Plugins.Network}}"), "passt-portmap")
	p.network("pp5", "passt-portmap")

	var inspect []struct {
		Name, Driver string
		Options      map[string]string
	}
	if err := json.Unmarshal([]byte(p.must("network", "inspect", "pp5")), &inspect); err != nil || len(inspect) != 1 || inspect[0].Driver != "passt-portmap" {
		t.Fatalf("network inspect: %+v, %v", inspect, err)
	}

	web, web2, v6 := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "tcp")
	echo := pastatest.FreePort(t, "udp")
	rng := pastatest.FreePortRange(t, "tcp", 3)
	tcp, udp := []uint16{web, web2, v6, rng, rng + 1, rng + 2}, []uint16{echo}
	p.must(p.runArgs("c1", "pp5", "-p", fmt.Sprintf("%d:80", web), "-p", fmt.Sprintf("%d:5353/udp", echo),
		"-p", fmt.Sprintf("127.0.0.1:%d-%d:8000-8002", rng, rng+2), "-p", fmt.Sprintf("[::1]:%d:80", v6))...)
	serves := func() {
		t.Helper()
		for _, ip := range []string{"127.0.0.1", "::1"} {
			runtimetest.MustGet(t, runtimetest.Addr(ip, web), runtimetest.Page(80))
			runtimetest.MustEcho(t, runtimetest.Addr(ip, echo), 5353)
		}
		for i := range uint16(3) {
			runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", rng+i), runtimetest.Page(8000+i))
		}
		runtimetest.MustGet(t, runtimetest.Addr("::1", v6), runtimetest.Page(80))
		runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", v6), runtimetest.Page(80))
	}
	serves()
	if n := len(p.forwarders()); n != 1 {
		t.Errorf("%d pastas of the plugin run for one container", n)
	}
	mustMention(t, "podman port", p.must("port", "c1"),
		fmt.Sprintf("80/tcp -> 0.0.0.0:%d", web), fmt.Sprintf("5353/udp -> 0.0.0.0:%d", echo),
		fmt.Sprintf("8000/tcp -> 127.0.0.1:%d", rng), fmt.Sprintf("8002/tcp -> 127.0.0.1:%d", rng+2),
		fmt.Sprintf("80/tcp -> ::1:%d", v6))

	p.must("restart", "--time", "0", "c1")
	serves()
	p.must("stop", "--time", "0", "c1")
	p.nothingLeft("pp5", tcp, udp)
	p.must("start", "c1")
	serves()

	p.must(p.runArgs("c2", "pp5", "-p", fmt.Sprintf("%d:8001", web2))...)
	runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", web2), runtimetest.Page(8001))
	runtimetest.MustGet(t, runtimetest.Addr("::1", web2), runtimetest.Page(8001))
	before := p.forwarders()
	if len(before) != 2 {
		t.Fatalf("%d pastas of the plugin for two containers: %v", len(before), before)
	}
	// reload: netavark tears the container down and sets it up again; the
	// plugin starts a new pasta for it.
	p.must("network", "reload", "c1")
	serves()
	runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", web2), runtimetest.Page(8001))
	after := p.forwarders()
	if len(after) != 2 || slices.Equal(sorted(before), sorted(after)) {
		t.Errorf("pastas before the reload %v, after %v: want c1's replaced", before, after)
	}

	p.must("rm", "--force", "--time", "0", "c1", "c2")
	p.nothingLeft("pp5", tcp, udp)
}

func sorted(s []int) []int { s = slices.Clone(s); slices.Sort(s); return s }

// TestRootfulRefusals: what Podman 5 users read when something is wrong,
// and that nothing is left of it: bad network options, named when the
// network is made; CNI keys that are no options of the driver; a
// published port another program holds (101, naming the holder); a
// container on two networks of the driver.
func TestRootfulRefusals(t *testing.T) {
	p := rootful(t)
	p.reservation(false)
	for _, c := range []struct{ opt, want string }{
		{"timeout=soon", "network.options.timeout"},
		{"socket=/run/pp.sock", "network.options.socket: not an option of the passt-portmap driver"},
		{"allowChained=true", "network.options.allowChained: not an option of the passt-portmap driver"},
		{"pastaArgs=-T auto", "use loopbackToHost instead"},
	} {
		out := p.fail("network", "create", "-d", "passt-portmap", "-o", c.opt, "pp5bad")
		mustMention(t, "network create -o "+c.opt, out, c.want)
	}
	if out, err := p.run("network", "exists", "pp5bad"); err == nil {
		t.Errorf("a refused network exists: %s", out)
	}

	p.network("pp5r", "passt-portmap")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	out := p.fail(p.runArgs("late", "pp5r", "-p", fmt.Sprintf("127.0.0.1:%d:80", taken))...)
	mustMention(t, "podman run on a taken port", out, `plugin "passt-portmap" failed: exit code 101`,
		"host ports could not listen", fmt.Sprintf("host port %d/TCP is held by podman5.test (pid %d)", taken, os.Getpid()))
	p.must("rm", "--force", "--time", "0", "late")
	p.nothingLeft("pp5r", nil, nil)

	// A second network of the driver for one container: the second
	// setup finds the first one's interface. The advice is what a Podman
	// user can do, not the CNI keys (socket, allowChained).
	p.network("pp5r2", "passt-portmap")
	out = p.fail(p.runArgs("two", "pp5r", "--network", "pp5r2")...)
	mustMention(t, "podman run on two networks", out, `plugin "passt-portmap" failed: exit code 7`,
		"a managed forwarder would be a second network in this namespace", "connect the container to this network alone")
	if strings.Contains(out, "allowChained") || strings.Contains(out, `"socket"`) {
		t.Errorf("the refusal suggests CNI keys the driver does not have:\n%s", out)
	}
	p.must("rm", "--force", "--time", "0", "two")
	p.nothingLeft("pp5r", nil, nil)
	p.nothingLeft("pp5r2", nil, nil)
}

// TestRootfulReservation: with Podman's defaults (port reservation on),
// a container with published ports is refused before the forwarder binds
// anything, with code 7 and the setting named; one without them runs.
// Nothing is left and the port is free again.
func TestRootfulReservation(t *testing.T) {
	p := rootful(t)
	p.reservation(true)
	p.network("pp5d", "passt-portmap")
	port := pastatest.FreePort(t, "tcp")
	out := p.fail(p.runArgs("reserved", "pp5d", "-p", fmt.Sprintf("%d:80", port))...)
	mustMention(t, "podman run with the reservation on", out, `plugin "passt-portmap" failed: exit code 7`,
		"Podman reserves the published host ports itself: set enable_port_reservation = false",
		"in the podman process while it sets the container up", dropIn)
	p.must("rm", "--force", "--time", "0", "reserved")
	p.nothingLeft("pp5d", []uint16{port}, nil)
	if err := pastatest.CanBind("tcp", int(port)); err != nil {
		t.Fatalf("port %d after the refused run: %v", port, err)
	}

	p.must(p.runArgs("unpublished", "pp5d")...)
	if state := p.must("inspect", "--format", "{{.State.Status}}", "unpublished"); state != "running" {
		t.Errorf("a container without published ports: %s", state)
	}
	if n := len(p.forwarders()); n != 1 {
		t.Errorf("%d pastas of the plugin for the container without published ports", n)
	}
	p.must("rm", "--force", "--time", "0", "unpublished")
	p.nothingLeft("pp5d", nil, nil)
}

// captureDriver is a netavark driver that keeps what Podman sends, then
// runs the plugin on it (exec: netavark stays its parent).
const captureDriver = `#!/bin/sh
mkdir -p /run/pp5-capture
f=/run/pp5-capture/$1-$$.json
cat >"$f"
exec /usr/libexec/netavark/passt-portmap "$@" <"$f"
`

// mapping is a port mapping as netavark hands it to a plugin.
type mapping struct {
	ContainerPort int    `json:"container_port"`
	HostIP        string `json:"host_ip"`
	HostPort      int    `json:"host_port"`
	Protocol      string `json:"protocol"`
	Range         int    `json:"range"`
}

// TestRootfulWhatPodmanSends: Podman 5.8 hands the plugin the TCP and
// UDP halves of one port (`-p P:5353/tcp -p P:5353/udp`; its -p refuses
// "tcp,udp") as two entries, one per protocol, never as "tcp,udp", and a
// range as one entry with its length; the plugin forwards both protocols.
func TestRootfulWhatPodmanSends(t *testing.T) {
	p := rootful(t)
	p.reservation(false)
	if err := p.r.write("/usr/libexec/netavark/passt-portmap-capture", captureDriver, 0o755); err != nil {
		t.Fatal(err)
	}
	p.network("pp5cap", "passt-portmap-capture")
	both, v6 := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "tcp")
	rng := pastatest.FreePortRange(t, "tcp", 3)
	p.must(p.runArgs("cap", "pp5cap", "-p", fmt.Sprintf("%d:5353/tcp", both), "-p", fmt.Sprintf("%d:5353/udp", both),
		"-p", fmt.Sprintf("127.0.0.1:%d-%d:8000-8002", rng, rng+2), "-p", fmt.Sprintf("[::1]:%d:8001", v6))...)
	runtimetest.MustEcho(t, runtimetest.Addr("127.0.0.1", both), 5353)
	runtimetest.MustEcho(t, runtimetest.Addr("::1", both), 5353)
	runtimetest.MustGet(t, runtimetest.Addr("::1", v6), runtimetest.Page(8001))
	// netavark starts no DNS server for a plugin's network, whatever
	// dns_enabled says.
	for _, pid := range runtimetest.ProcessesWith("aardvark-dns") {
		if inRun(pid) {
			t.Errorf("aardvark-dns runs (pid %d) for the plugin's network", pid)
		}
	}
	files, _ := filepath.Glob(p.r.path("/run/pp5-capture/setup-*.json"))
	if len(files) != 1 {
		t.Fatalf("captured setups: %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Podman 5.8 setup input: %s", b)
	var in struct {
		PortMappings []mapping `json:"port_mappings"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{ContainerPort: 5353, HostPort: int(both), Protocol: "tcp", Range: 1},
		{ContainerPort: 5353, HostPort: int(both), Protocol: "udp", Range: 1},
		{ContainerPort: 8000, HostIP: "127.0.0.1", HostPort: int(rng), Protocol: "tcp", Range: 3},
		{ContainerPort: 8001, HostIP: "::1", HostPort: int(v6), Protocol: "tcp", Range: 1},
	}
	got := slices.Clone(in.PortMappings)
	slices.SortFunc(got, func(a, b mapping) int {
		return strings.Compare(fmt.Sprint(a.ContainerPort, a.Protocol), fmt.Sprint(b.ContainerPort, b.Protocol))
	})
	if !slices.Equal(got, want) {
		t.Errorf("port_mappings %+v, want %+v", in.PortMappings, want)
	}
	p.must("rm", "--force", "--time", "0", "cap")
	p.nothingLeft("pp5cap", []uint16{both, rng, rng + 1, rng + 2, v6}, []uint16{both})
}
