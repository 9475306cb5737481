package podman_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// published are the host ports of TestPodmanPublish's container.
type published struct {
	anyTCP, anyUDP, loTCP, loUDP, v6TCP, v6UDP uint16
	tcpRange, udpRange                         uint16 // first of 3
}

func newPublished(t *testing.T) published {
	tcp := pastatest.FreePorts(t, "tcp", 3)
	udp := pastatest.FreePorts(t, "udp", 3)
	return published{anyTCP: tcp[0], loTCP: tcp[1], v6TCP: tcp[2], anyUDP: udp[0], loUDP: udp[1], v6UDP: udp[2],
		tcpRange: pastatest.FreePortRange(t, "tcp", 3), udpRange: pastatest.FreePortRange(t, "udp", 3)}
}

// flags are the -p options: every host address form Podman takes, both
// protocols, and a range of each.
func (pp published) flags() []string {
	return []string{
		"-p", fmt.Sprintf("%d:80", pp.anyTCP),
		"-p", fmt.Sprintf("%d:5353/udp", pp.anyUDP),
		"-p", fmt.Sprintf("127.0.0.1:%d:8000", pp.loTCP),
		"-p", fmt.Sprintf("127.0.0.1:%d:6001/udp", pp.loUDP),
		"-p", fmt.Sprintf("[::1]:%d:8001", pp.v6TCP),
		"-p", fmt.Sprintf("[::1]:%d:6000/udp", pp.v6UDP),
		"-p", fmt.Sprintf("%d-%d:8000-8002", pp.tcpRange, pp.tcpRange+2),
		"-p", fmt.Sprintf("%d-%d:6000-6002/udp", pp.udpRange, pp.udpRange+2),
	}
}

// mustServe proves every published port with traffic from the host.
func (pp published) mustServe(t *testing.T) {
	t.Helper()
	for _, ip := range []string{"127.0.0.1", "::1"} {
		runtimetest.MustGet(t, runtimetest.Addr(ip, pp.anyTCP), runtimetest.Page(80))
		runtimetest.MustEcho(t, runtimetest.Addr(ip, pp.anyUDP), 5353)
	}
	runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", pp.loTCP), runtimetest.Page(8000))
	runtimetest.MustEcho(t, runtimetest.Addr("127.0.0.1", pp.loUDP), 6001)
	runtimetest.MustGet(t, runtimetest.Addr("::1", pp.v6TCP), runtimetest.Page(8001))
	runtimetest.MustEcho(t, runtimetest.Addr("::1", pp.v6UDP), 6000)
	// A host address binds that address only.
	runtimetest.MustNotGet(t, runtimetest.Addr("::1", pp.loTCP), runtimetest.Page(8000))
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", pp.v6TCP), runtimetest.Page(8001))
	for i := range uint16(3) {
		runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", pp.tcpRange+i), runtimetest.Page(8000+i))
		runtimetest.MustEcho(t, runtimetest.Addr("::1", pp.udpRange+i), 6000+i)
	}
}

// mustNotServe proves the ports closed.
func (pp published) mustNotServe(t *testing.T) {
	t.Helper()
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", pp.anyTCP), runtimetest.Page(80))
	runtimetest.MustNotGet(t, runtimetest.Addr("::1", pp.v6TCP), runtimetest.Page(8001))
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", pp.tcpRange+2), runtimetest.Page(8002))
	runtimetest.MustNotEcho(t, runtimetest.Addr("::1", pp.anyUDP), 5353)
}

// forwarders returns the managed forwarder directories in use.
func (p *podman) forwarders() []string {
	return runtimetest.Entries(p.t, p.dataDir+"/forwarders")
}

// TestPodmanPublish: "podman run -d -p" with TCP and UDP on every host
// address form and port ranges works through the plugin, as do "podman
// restart", "podman stop" and "podman start"; after "podman rm" no pasta,
// record or listener is left.
func TestPodmanPublish(t *testing.T) {
	p := newPodman(t, config{})
	p.network("pp", p.managed())
	pp := newPublished(t)

	p.must(runArgs("web", "pp", pp.flags()...)...)
	pp.mustServe(t)
	if fs := p.forwarders(); len(fs) != 1 {
		t.Fatalf("forwarder directories after run: %v, want one", fs)
	}
	first := runtimetest.ProcessesWith(p.dataDir)

	p.must("restart", "--time", "0", "web")
	pp.mustServe(t)
	if fs := p.forwarders(); len(fs) != 1 {
		t.Fatalf("forwarder directories after restart: %v, want one", fs)
	}
	if again := runtimetest.ProcessesWith(p.dataDir); len(again) != 1 || len(first) != 1 || again[0] == first[0] {
		t.Errorf("pasta before restart %v, after %v: want one each, a new one", first, again)
	}

	p.must("stop", "--time", "0", "web")
	pp.mustNotServe(t)
	runtimetest.NothingLeft(t, p.dataDir)

	p.must("start", "web")
	pp.mustServe(t)

	p.must("rm", "--force", "--time", "0", "web")
	runtimetest.NothingLeft(t, p.dataDir)
	pp.mustNotServe(t)
	runtimetest.NoListener(t, []uint16{pp.anyTCP, pp.loTCP, pp.v6TCP, pp.tcpRange, pp.tcpRange + 1, pp.tcpRange + 2},
		[]uint16{pp.anyUDP, pp.loUDP, pp.v6UDP, pp.udpRange, pp.udpRange + 1, pp.udpRange + 2})
}

// TestPodmanTwoContainers: two containers on one network, each with its
// own host ports, are served by their own forwarders; removing one leaves
// the other serving.
func TestPodmanTwoContainers(t *testing.T) {
	p := newPodman(t, config{})
	p.network("pp", p.managed())
	tcp := pastatest.FreePorts(t, "tcp", 2)
	udp := pastatest.FreePorts(t, "udp", 2)
	for i, name := range []string{"one", "two"} {
		p.must(runArgs(name, "pp", "-p", fmt.Sprintf("%d:%d", tcp[i], runtimetest.TCPPorts[i]),
			"-p", fmt.Sprintf("%d:%d/udp", udp[i], runtimetest.UDPPorts[i]))...)
	}
	for i := range 2 {
		runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", tcp[i]), runtimetest.Page(runtimetest.TCPPorts[i]))
		runtimetest.MustEcho(t, runtimetest.Addr("::1", udp[i]), runtimetest.UDPPorts[i])
	}
	if fs := p.forwarders(); len(fs) != 2 {
		t.Fatalf("forwarder directories: %v, want two", fs)
	}
	p.must("rm", "--force", "--time", "0", "one")
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", tcp[0]), runtimetest.Page(runtimetest.TCPPorts[0]))
	runtimetest.MustGet(t, runtimetest.Addr("::1", tcp[1]), runtimetest.Page(runtimetest.TCPPorts[1]))
	runtimetest.MustEcho(t, runtimetest.Addr("127.0.0.1", udp[1]), runtimetest.UDPPorts[1])
	if fs := p.forwarders(); len(fs) != 1 {
		t.Fatalf("forwarder directories after removing one: %v, want one", fs)
	}
	p.must("rm", "--force", "--time", "0", "two")
	runtimetest.NothingLeft(t, p.dataDir)
}

// mustMention fails unless out holds every one of subs.
func mustMention(t *testing.T, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Fatalf("%s does not say %q:\n%s", what, s, out)
		}
	}
}
