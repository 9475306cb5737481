package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// The isolation tests run the managed pasta inside a network namespace
// that stands for the host ("host"), so that every packet stays in
// namespaces the test made: "host" has a veth link to a second namespace
// ("other", a machine on the host's network that is also its gateway),
// and servers on its own loopback that the container must not reach
// unless configured. pasta runs there through `ip netns exec`, which also
// bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf for pasta
// alone: the host's resolver is on its loopback (127.0.0.53, as with
// systemd-resolved), answered by a small DNS server in "host".
const (
	hostLo4Port = 8081 // "host": 127.0.0.1 only; below 32768 so that pasta's -T auto would forward it
	hostLo6Port = 8082 // "host": ::1 only
	otherPort   = 8083 // "other": its address on the host's network
	gateway4    = "198.51.100.1"
	gateway6    = "2001:db8:1::1"
	probeName   = "probe.passt-portmap.test."
	probeAddr   = "203.0.113.7"
	hostDNS     = "127.0.0.53"
)

type sandbox struct {
	host, other *pastatest.NetNS
	pasta       string // runs the real pasta inside host
}

// newSandbox makes the two namespaces, their link, the servers and a
// pasta wrapper that runs inside "host".
func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	realPasta, _ := pastatest.Bins(t)
	s := &sandbox{host: pastatest.NewNetNS(t), other: pastatest.NewNetNS(t)}
	s.host.IP(t, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", s.other.Name)
	for _, c := range []struct {
		n      *pastatest.NetNS
		a4, a6 string
	}{{s.host, "198.51.100.2/24", "2001:db8:1::2/64"}, {s.other, gateway4 + "/24", gateway6 + "/64"}} {
		c.n.IP(t, "addr", "add", c.a4, "dev", "eth0")
		c.n.IP(t, "addr", "add", c.a6, "dev", "eth0", "nodad")
		c.n.IP(t, "link", "set", "eth0", "up")
	}
	s.host.IP(t, "route", "add", "default", "via", gateway4)
	s.host.IP(t, "-6", "route", "add", "default", "via", gateway6)

	pastatest.ServeTCP(t, s.host, fmt.Sprintf("127.0.0.1:%d", hostLo4Port), "host-lo4")
	pastatest.ServeTCP(t, s.host, fmt.Sprintf("[::1]:%d", hostLo6Port), "host-lo6")
	pastatest.ServeTCP(t, s.other, fmt.Sprintf(":%d", otherPort), "other-host")
	serveDNS(t, s.host, hostDNS+":53")

	etc := filepath.Join("/etc/netns", s.host.Name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+hostDNS+"\nsearch passt-portmap.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := managedDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.pasta = filepath.Join(filepath.Dir(dir), "pasta-in-host")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", s.host.Name, realPasta)
	if err := os.WriteFile(s.pasta, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

// config returns a forwarder configuration for a fresh container
// namespace, run through the sandbox's pasta; the forwarder is stopped
// when the test ends.
func (s *sandbox) config(t *testing.T) (forwarder.Config, *pastatest.NetNS) {
	t.Helper()
	c := pastatest.NewNetNS(t)
	cfg := forwarder.Config{Pasta: s.pasta, NetNS: c.Path, IfName: "eth0", Dir: managedDir(t), Timeout: managedTimeout}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
		defer cancel()
		if err := forwarder.Stop(ctx, cfg.Dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if t.Failed() {
			dumpManagedLogs(t, cfg.Dir)
		}
	})
	return cfg, c
}

// cniList is the plugin alone as a CNI list named name, with extra keys
// ("" or `"key": value,`) and its data under dataDir, and the runtime's
// call for the container c.
func (s *sandbox) cniList(t *testing.T, c *pastatest.NetNS, dataDir, name, extra string) (*libcni.CNIConfig, *libcni.NetworkConfigList, *libcni.RuntimeConf) {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": %q,
	  "plugins": [{"type": "passt-portmap", "pasta": %q, "dataDir": %q, "timeout": "15s", %s
	               "capabilities": {"portMappings": true}}]}`, name, s.pasta, dataDir, extra)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{managedPlugin(t)}, filepath.Join(dataDir, "cache"), nil)
	return cni, list, &libcni.RuntimeConf{ContainerID: "iso-" + c.Name, NetNS: c.Path, IfName: "eth0"}
}

// reach is one path from the container to a server.
type reach struct {
	what, dst, reply string
}

func mustReach(t *testing.T, c *pastatest.NetNS, r reach) {
	t.Helper()
	if got, err := askFromNetns(c, r.dst); err != nil || got != r.reply {
		t.Errorf("%s: from the container to %s: %q, %v; want %q", r.what, r.dst, got, err, r.reply)
	}
}

func mustNotReach(t *testing.T, c *pastatest.NetNS, r reach) {
	t.Helper()
	got, err := askFromNetns(c, r.dst)
	if err == nil || got == r.reply {
		t.Errorf("%s: from the container to %s answered %q (err %v); want no connection", r.what, r.dst, got, err)
	} else {
		t.Logf("%s: %s: %v", r.what, r.dst, err)
	}
}

func hostPath(what, addr string, port int, reply string) reach {
	return reach{what, net.JoinHostPort(addr, strconv.Itoa(port)), reply}
}

// closedPaths are the ways pasta's defaults open the host's loopback:
// the gateway mapped to it, and the container's own loopback forwarded
// to it (-T auto).
func closedPaths() []reach {
	return []reach{
		hostPath("host's 127.0.0.1 through the IPv4 gateway", gateway4, hostLo4Port, "host-lo4"),
		hostPath("host's ::1 through the IPv6 gateway", gateway6, hostLo6Port, "host-lo6"),
		hostPath("host's 127.0.0.1 through the container's 127.0.0.1", "127.0.0.1", hostLo4Port, "host-lo4"),
		hostPath("host's ::1 through the container's ::1", "::1", hostLo6Port, "host-lo6"),
	}
}

// otherHost: outbound traffic to another machine is not affected.
var otherHost = hostPath("another machine on the host's network", gateway4, otherPort, "other-host")

// TestIsolationClosedByDefault: a managed container reaches neither a
// server on the host's 127.0.0.1 nor one on ::1, through the gateway
// address or its own loopback, over IPv4 and IPv6; it still reaches
// another machine.
func TestIsolationClosedByDefault(t *testing.T) {
	s := newSandbox(t)
	cfg, c := s.config(t)
	ensure(t, cfg)
	for _, r := range closedPaths() {
		mustNotReach(t, c, r)
	}
	mustReach(t, c, otherHost)
}

// TestIsolationMapHostLoopback: the configured addresses, and only they,
// reach the host's loopback; the container's loopback stays closed.
func TestIsolationMapHostLoopback(t *testing.T) {
	s := newSandbox(t)
	cfg, c := s.config(t)
	cfg.MapHostLoopback = []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}
	ensure(t, cfg)
	mustReach(t, c, hostPath("host's 127.0.0.1 through the mapped IPv4 address", "169.254.1.2", hostLo4Port, "host-lo4"))
	mustReach(t, c, hostPath("host's ::1 through the mapped IPv6 address", "fd99::2", hostLo6Port, "host-lo6"))
	for _, r := range closedPaths() {
		mustNotReach(t, c, r)
	}
	mustReach(t, c, otherHost)
}

// TestIsolationLoopbackToHost: loopbackToHost forwards the container's
// loopback ports to the host's, over IPv4 and IPv6; the gateway stays
// another machine.
func TestIsolationLoopbackToHost(t *testing.T) {
	s := newSandbox(t)
	cfg, c := s.config(t)
	cfg.LoopbackToHost = true
	ensure(t, cfg)
	paths := closedPaths()
	for _, r := range paths[2:] {
		mustReach(t, c, r)
	}
	for _, r := range paths[:2] {
		mustNotReach(t, c, r)
	}
}

// TestIsolationCNI: through libcni, the plugin's ADD result names the
// DNS forwarder address, a name resolves through it from inside the
// container although the host's resolver is on the host's loopback; the
// host's loopback is closed by default and opened by the
// mapHostLoopback key.
func TestIsolationCNI(t *testing.T) {
	s := newSandbox(t)
	dataDir := pastatest.TempDir(t, "iso-data-")

	for _, tc := range []struct {
		name, extra string
		open        bool
	}{
		{"default", "", false},
		{"mapHostLoopback", `"mapHostLoopback": "169.254.1.2",`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pastatest.NewNetNS(t)
			cni, list, rt := s.cniList(t, c, dataDir, "iso-"+tc.name, tc.extra)
			ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
			defer cancel()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
				defer cancel()
				if err := cni.DelNetworkList(ctx, list, rt); err != nil {
					t.Errorf("cleanup DEL: %v", err)
				}
			})
			r, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			res, err := current.NewResultFromResult(r)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.DNS.Nameservers, []string{forwarder.DNSForwardAddr}) {
				t.Fatalf("result DNS %v, want [%s]: the host's resolver %s is on its loopback", res.DNS.Nameservers, forwarder.DNSForwardAddr, hostDNS)
			}
			got, err := resolveFrom(ctx, c, res.DNS.Nameservers[0], probeName)
			if err != nil || !slices.Contains(got, probeAddr) {
				t.Fatalf("resolve %s from the container through %s: %v, %v; want %s", probeName, res.DNS.Nameservers[0], got, err, probeAddr)
			}
			for _, p := range closedPaths() {
				mustNotReach(t, c, p)
			}
			mapped := hostPath("host's 127.0.0.1 through mapHostLoopback", "169.254.1.2", hostLo4Port, "host-lo4")
			if tc.open {
				mustReach(t, c, mapped)
			}
		})
	}
}

// resolveFrom looks name up (IPv4) from inside n, asking server:53.
func resolveFrom(ctx context.Context, n *pastatest.NetNS, server, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, net.JoinHostPort(server, "53"))
			return err
		})
		return c, err
	}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := r.LookupIP(ctx, "ip4", name)
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out, err
}

// serveDNS answers UDP DNS queries on addr inside n: probeName's A
// record is probeAddr, anything else has no answer.
func serveDNS(t *testing.T, n *pastatest.NetNS, addr string) {
	t.Helper()
	pc := pastatest.ListenPacket(t, n, "udp4", addr)
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, ok := dnsAnswer(buf[:k]); ok {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
}

// dnsAnswer builds the reply to one query: the header and question
// copied, then an A record when the question is probeName, type A.
func dnsAnswer(q []byte) ([]byte, bool) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, false
	}
	var labels []string
	i := 12
	for {
		if i >= len(q) {
			return nil, false
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil, false
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, false
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	end := i + 4
	match := strings.EqualFold(strings.Join(labels, ".")+".", probeName) && qtype == 1
	resp := append([]byte(nil), q[:end]...)
	binary.BigEndian.PutUint16(resp[2:4], 0x8580|binary.BigEndian.Uint16(q[2:4])&0x0100) // QR AA RA, RD copied
	binary.BigEndian.PutUint16(resp[8:10], 0)                                            // no authority
	binary.BigEndian.PutUint16(resp[10:12], 0)                                           // no additional (the query's EDNS record is dropped)
	if match {
		binary.BigEndian.PutUint16(resp[6:8], 1)
		ip := netip.MustParseAddr(probeAddr).As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		resp = append(resp, ip[:]...)
	} else {
		binary.BigEndian.PutUint16(resp[6:8], 0)
	}
	return resp, true
}

// TestIsolationPrivileges: what the README's security section says the
// managed pasta keeps, measured on the running process: as root it runs
// as uid 0 with CAP_NET_BIND_SERVICE and CAP_SYS_ADMIN only, under a
// seccomp filter and with NoNewPrivs set.
func TestIsolationPrivileges(t *testing.T) {
	cfg, _ := managedConfig(t)
	inst := ensure(t, cfg)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", inst.PID))
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			status[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	t.Logf("pasta %d: Uid %s, CapEff %s, CapPrm %s, CapBnd %s, CapInh %s, CapAmb %s, NoNewPrivs %s, Seccomp %s",
		inst.PID, status["Uid"], status["CapEff"], status["CapPrm"], status["CapBnd"], status["CapInh"], status["CapAmb"], status["NoNewPrivs"], status["Seccomp"])
	const netBindService, sysAdmin = 10, 21
	want := fmt.Sprintf("%016x", uint64(1)<<netBindService|uint64(1)<<sysAdmin)
	for k, v := range map[string]string{
		"Uid":        "0 0 0 0",
		"CapEff":     want,
		"CapPrm":     want,
		"CapInh":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2", // filter mode
	} {
		if status[k] != v {
			t.Errorf("%s of the managed pasta: %q, want %q (update the README's security section if pasta changed)", k, status[k], v)
		}
	}
	// Its own mount namespace, with an empty root.
	mine, err1 := os.Readlink("/proc/self/ns/mnt")
	its, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", inst.PID))
	if err1 != nil || err2 != nil || mine == its {
		t.Errorf("mount namespace of the managed pasta %q (%v), the test's %q (%v): want its own", its, err2, mine, err1)
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", inst.PID)); err != nil || len(ents) != 0 {
		t.Errorf("root directory of the managed pasta: %d entries, %v; want an empty one", len(ents), err)
	}
}

// TestPastaOptionsMatchBinary: the option table that pastaArgs is checked
// against is the real pasta's: every long option is recognized (not an
// abbreviation of another) and takes a value exactly when the table
// says so, and so does every short letter.
func TestPastaOptionsMatchBinary(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	dir := t.TempDir() // some options open their file while parsing
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, pasta, append(args, "--zz-not-an-option")...)
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	for _, o := range forwarder.Options() {
		long := "--" + o.Long
		if o.HasValue {
			out := run(long + "=x")
			if strings.Contains(out, "unrecognized option '"+long) || strings.Contains(out, "is ambiguous") || strings.Contains(out, "doesn't allow an argument") {
				t.Errorf("%s=x: pasta says %q", long, firstLine(out))
			}
		} else {
			out := run(long + "=x")
			if !strings.Contains(out, "option '"+long+"' doesn't allow an argument") {
				t.Errorf("%s=x: pasta says %q, want that it takes no value", long, firstLine(out))
			}
		}
		if o.Short == 0 {
			continue
		}
		short := "-" + string(o.Short)
		if o.HasValue {
			// As the last argument: pasta must ask for the value.
			ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
			cmd := exec.CommandContext(ctx, pasta, short)
			cmd.Dir = dir
			out, _ := cmd.CombinedOutput()
			cancel()
			if !strings.Contains(string(out), "requires an argument") {
				t.Errorf("%s alone: pasta says %q, want that it needs a value", short, firstLine(string(out)))
			}
		} else if out := run(short); strings.Contains(out, "invalid option") {
			t.Errorf("%s: pasta says %q", short, firstLine(out))
		}
	}
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.Contains(l, "AVX2") {
			return l
		}
	}
	return ""
}

// servePeer answers every TCP connection to addr inside n with the
// address the connection came from, as n saw it.
func servePeer(t *testing.T, n *pastatest.NetNS, addr string) {
	t.Helper()
	pastatest.ServeTCPFunc(t, n, "tcp", addr, func(peer net.Addr) string { return peer.(*net.TCPAddr).IP.String() })
}

// rawPasta starts the real pasta in the sandbox's "host" as the managed
// forwarder would be started, with args added as they are, unchecked
// (what the plugin would run if it did not check pastaArgs), for a fresh
// container namespace, and stops it when the test ends.
func (s *sandbox) rawPasta(t *testing.T, args []string) *pastatest.NetNS {
	t.Helper()
	c := pastatest.NewNetNS(t)
	dir := managedDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	full := []string{"--config-net", "-c", filepath.Join(dir, "s"), "-P", filepath.Join(dir, "p"), "--runas", "0",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "-I", "eth0"}
	if !slices.Contains(args, "--dns-forward") {
		full = append(full, "--dns-forward", forwarder.DNSForwardAddr)
	}
	full = append(append(full, args...), "--netns", c.Path)
	ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, s.pasta, full...).CombinedOutput(); err != nil {
		t.Fatalf("pasta %s: %v: %s", strings.Join(full, " "), err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "p")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return c
}

// TestIsolationPastaArgsLoopback: pastaArgs whose values aim the
// container at the host's loopback are refused (7, naming pastaArgs[i]
// and the option) by the CNI front end, although pasta would take them;
// run by hand, pasta shows the path each would open: host services see
// the container's connections come from 127.0.0.1, or its DNS queries
// reach a server on the host's 127.0.0.1:53. The same options with
// addresses off the loopback are accepted and open no such path.
func TestIsolationPastaArgsLoopback(t *testing.T) {
	s := newSandbox(t)
	const peerPort, mapped, dnsFwd = 8084, "169.254.1.9", "169.254.1.3"
	servePeer(t, s.host, fmt.Sprintf("198.51.100.2:%d", peerPort))
	serveDNS(t, s.host, "127.0.0.1:53") // a loopback-only service of the host
	serveDNS(t, s.other, gateway4+":53")
	// peerVia is the address the host saw a connection from the
	// container come from ("" when there was none).
	peerVia := func(t *testing.T, c *pastatest.NetNS) string {
		t.Helper()
		got, err := askFromNetns(c, net.JoinHostPort(mapped, strconv.Itoa(peerPort)))
		if err != nil {
			t.Logf("from the container to %s:%d: %v", mapped, peerPort, err)
		}
		return got
	}
	resolves := func(c *pastatest.NetNS) bool {
		got, err := resolveFrom(context.Background(), c, dnsFwd, probeName)
		return err == nil && slices.Contains(got, probeAddr)
	}
	dataDir := pastatest.TempDir(t, "iso-args-")

	for _, tc := range []struct {
		name   string
		args   []string
		option string
		opened func(t *testing.T, c *pastatest.NetNS) bool // the path, through raw pasta
	}{
		{"outbound on loopback", []string{"--outbound", "127.0.0.1", "--map-guest-addr", mapped}, "-o (--outbound)",
			func(t *testing.T, c *pastatest.NetNS) bool { return peerVia(t, c) == "127.0.0.1" }},
		{"DNS host on loopback", []string{"--dns-host", "127.0.0.1", "--dns-forward", dnsFwd}, "--dns-host",
			func(t *testing.T, c *pastatest.NetNS) bool { return resolves(c) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.opened(t, s.rawPasta(t, tc.args)) {
				t.Fatalf("pasta %q opens no path to the host's loopback here: the test no longer shows why they are refused", tc.args)
			}
			var ae *forwarder.ArgError
			if err := forwarder.CheckArgs(tc.args); !errors.As(err, &ae) || ae.Index != 0 || ae.Option != tc.option {
				t.Fatalf("CheckArgs(%q) = %v, want pastaArgs[0] refused, naming %s", tc.args, err, tc.option)
			}
			c := pastatest.NewNetNS(t)
			args, _ := json.Marshal(tc.args)
			cni, list, rt := s.cniList(t, c, dataDir, "iso-args", `"pastaArgs": `+string(args)+",")
			ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
			defer cancel()
			_, err := cni.AddNetworkList(ctx, list, rt)
			if te := wantCode(t, "ADD with pastaArgs "+string(args), err, 7); !strings.Contains(te.Details, "pastaArgs[0]") || !strings.Contains(te.Details, tc.option) {
				t.Errorf("ADD's error %v does not name pastaArgs[0] and %s", te, tc.option)
			}
			if tc.opened(t, c) {
				t.Errorf("after the refused ADD, the container reaches the host's loopback")
			}
		})
	}

	// The plain options: accepted, and no loopback.
	cfg, c := s.config(t)
	cfg.Args = []string{"--outbound", "198.51.100.2", "--map-guest-addr", mapped, "--dns-host", gateway4, "--dns-forward", dnsFwd}
	ensure(t, cfg)
	if got := peerVia(t, c); got != "198.51.100.2" {
		t.Errorf("with --outbound 198.51.100.2 the host saw the container's connection from %s", got)
	}
	if !resolves(c) {
		t.Errorf("with --dns-host %s the container cannot resolve through %s", gateway4, dnsFwd)
	}
	for _, r := range closedPaths() {
		mustNotReach(t, c, r)
	}
}
