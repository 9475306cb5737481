package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// The real netavark (Podman 5/6's network backend) runs the plugin as
// the external driver "passt-portmap": the binary that `go build
// ./plugins/passt-portmap` makes, found in a plugin directory by that
// name. scripts/test.sh exports NETAVARK_BIN_DIR from
// scripts/fetch-netavark.sh.

// netavarkTimeout bounds one netavark command.
const netavarkTimeout = 60 * time.Second

// netavarkBin returns the netavark executable; the test fails, never
// skips, when it is missing.
func netavarkBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NETAVARK_BIN_DIR")
	if dir == "" {
		t.Fatal("NETAVARK_BIN_DIR is not set: run scripts/test.sh, or export NETAVARK_BIN_DIR=$(scripts/fetch-netavark.sh | tail -n1)")
	}
	bin := filepath.Join(dir, "netavark")
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no executable netavark in NETAVARK_BIN_DIR=%s (stat: %v)", dir, err)
	}
	return bin
}

// nvNetwork is one network of a netavark call: its name, its options
// (podman network create -o) and the driver.
type nvNetwork struct {
	Name, Driver string
	Options      map[string]string
}

// nvPort is a port mapping as Podman hands it to netavark.
type nvPort struct {
	ContainerPort uint16 `json:"container_port"`
	HostIP        string `json:"host_ip"`
	HostPort      uint16 `json:"host_port"`
	Protocol      string `json:"protocol"`
	Range         uint16 `json:"range"`
}

// nvCall is a container's networks and ports, and where netavark runs.
type nvCall struct {
	bin, configDir string
	pluginDirs     []string
	containerID    string
	networks       []nvNetwork
	ports          []nvPort
}

func newNVCall(t *testing.T, networks []nvNetwork, ports []nvPort) *nvCall {
	t.Helper()
	return &nvCall{
		bin:         netavarkBin(t),
		configDir:   t.TempDir(),
		pluginDirs:  []string{managedPlugin(t)},
		containerID: fmt.Sprintf("%x", time.Now().UnixNano()) + "c0ffee",
		networks:    networks,
		ports:       ports,
	}
}

// input is the JSON Podman (go.podman.io/common's netavark backend) sends
// to netavark setup and teardown, with the explicit nulls of a network
// made by `podman network create -d DRIVER -o KEY=VALUE`.
func (c *nvCall) input(t *testing.T) []byte {
	t.Helper()
	networks := map[string]any{}
	info := map[string]any{}
	for i, n := range c.networks {
		networks[n.Name] = map[string]any{"aliases": []string{"ctr"}, "interface_name": fmt.Sprintf("eth%d", i),
			"static_ips": nil, "static_mac": nil, "options": nil}
		info[n.Name] = map[string]any{"name": n.Name, "id": fmt.Sprintf("%064d", i), "driver": n.Driver,
			"network_interface": nil, "subnets": nil, "routes": nil, "ipv6_enabled": false, "internal": false,
			"dns_enabled": false, "network_dns_servers": nil, "options": n.Options, "ipam_options": nil}
	}
	ports := c.ports
	if ports == nil {
		ports = []nvPort{}
	}
	b, err := json.Marshal(map[string]any{"container_id": c.containerID, "container_name": "ctr",
		"port_mappings": ports, "networks": networks, "network_info": info})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run runs `netavark --config DIR --plugin-directory DIR... --firewall-driver none VERB NETNS`
// and returns its stdout, stderr and error.
func (c *nvCall) run(t *testing.T, verb, netns string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), netavarkTimeout)
	defer cancel()
	args := []string{"--config", c.configDir}
	for _, d := range c.pluginDirs {
		args = append(args, "--plugin-directory", d)
	}
	args = append(args, "--firewall-driver", "none", verb, netns)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stdin = bytes.NewReader(c.input(t))
	cmd.Env = append(os.Environ(), "RUST_LOG=netavark=info")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	t.Logf("netavark %s %s: %v\nstdout: %s\nstderr: %s", verb, netns, err, out.String(), errOut.String())
	return out.String(), errOut.String(), err
}

func (c *nvCall) mustRun(t *testing.T, verb, netns string) string {
	t.Helper()
	out, _, err := c.run(t, verb, netns)
	if err != nil {
		t.Fatalf("netavark %s: %v", verb, err)
	}
	return out
}

// nvStatus is netavark's answer to setup: a StatusBlock per network.
type nvStatus map[string]struct {
	DNSServerIPs []string `json:"dns_server_ips"`
	Interfaces   map[string]struct {
		MACAddress string `json:"mac_address"`
		Subnets    []struct {
			Gateway string `json:"gateway"`
			IPNet   string `json:"ipnet"`
		} `json:"subnets"`
	} `json:"interfaces"`
}

// nvOptions are a network's options: the test's pasta and data directory.
func nvOptions(t *testing.T, dataDir string) map[string]string {
	pasta, _ := pastatest.Bins(t)
	return map[string]string{"pasta": pasta, "dataDir": dataDir, "timeout": "15s"}
}

// assertNothingLeft fails unless dataDir holds no managed forwarder and
// no ownership record, and no process names a file under it.
func assertNothingLeft(t *testing.T, dataDir string) {
	t.Helper()
	fwds, _ := filepath.Glob(filepath.Join(dataDir, "forwarders", "*"))
	recs, _ := filepath.Glob(filepath.Join(dataDir, "records", "*", "*"))
	if len(fwds) != 0 || len(recs) != 0 {
		t.Errorf("left behind under %s: forwarders %v, records %v", dataDir, fwds, recs)
	}
	if pids := processesUnder(t, dataDir); len(pids) != 0 {
		t.Errorf("processes still use %s: %v", dataDir, pids)
	}
}

// freeRangeBoth returns the first of n consecutive ports free for both
// TCP and UDP.
func freeRangeBoth(t *testing.T, n int) uint16 {
	t.Helper()
	for try := 0; try < 20; try++ {
		first := pastatest.FreePortRange(t, "tcp", n)
		free := true
		for p := int(first); p < int(first)+n && free; p++ {
			c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p))
			if err != nil {
				free = false
				continue
			}
			c.Close()
		}
		if free {
			return first
		}
	}
	t.Fatalf("no %d consecutive ports free for TCP and UDP", n)
	return 0
}

// TestNetavarkSetupTeardown: the real netavark runs the plugin as the
// driver of a network made like `podman network create -d passt-portmap
// -o pasta=... -o dataDir=...`. Setup gives the namespace pasta's network,
// reported in the StatusBlock as the namespace really has it, and
// forwards a TCP port and a "tcp,udp" range from 127.0.0.1 and [::1] to
// servers in the namespace. Teardown closes the ports and stops pasta; a
// second teardown succeeds.
func TestNetavarkSetupTeardown(t *testing.T) {
	n := pastatest.NewNetNS(t)
	dataDir := pastatest.TempDir(t, "nv-data-")
	single := pastatest.FreePort(t, "tcp")
	first := freeRangeBoth(t, 3)
	c := newNVCall(t, []nvNetwork{{Name: "nvnet-" + n.Name, Driver: "passt-portmap", Options: nvOptions(t, dataDir)}}, []nvPort{
		{ContainerPort: 80, HostIP: "", HostPort: single, Protocol: "tcp", Range: 1},
		{ContainerPort: 5000, HostIP: "", HostPort: first, Protocol: "tcp,udp", Range: 3},
	})
	t.Cleanup(func() { c.run(t, "teardown", n.Path) })

	pastatest.ServeTCP(t, n, ":80", "web")
	for i := 0; i < 3; i++ {
		pastatest.ServeTCP(t, n, fmt.Sprintf(":%d", 5000+i), fmt.Sprintf("tcp-%d", 5000+i))
		pastatest.ServeUDP(t, n, fmt.Sprintf(":%d", 5000+i), fmt.Sprintf("udp-%d", 5000+i))
	}

	out := c.mustRun(t, "setup", n.Path)
	var st nvStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("setup's answer %q: %v", out, err)
	}
	sb, ok := st[c.networks[0].Name]
	if !ok {
		t.Fatalf("setup's answer has no status for %s: %s", c.networks[0].Name, out)
	}
	eth, ok := sb.Interfaces["eth0"]
	if !ok || len(sb.Interfaces) != 1 {
		t.Fatalf("StatusBlock interfaces %v, want eth0 only", sb.Interfaces)
	}
	// What the StatusBlock says is what the namespace has.
	link := n.IP(t, "-o", "link", "show", "eth0")
	if eth.MACAddress == "" || !strings.Contains(link, eth.MACAddress) {
		t.Errorf("StatusBlock MAC %q, namespace: %s", eth.MACAddress, link)
	}
	addrs := n.IP(t, "-o", "addr", "show", "dev", "eth0")
	var v4 bool
	for _, s := range eth.Subnets {
		if !strings.Contains(addrs, " "+s.IPNet+" ") {
			t.Errorf("StatusBlock address %s is not on eth0: %s", s.IPNet, addrs)
		}
		if strings.Contains(s.IPNet, ".") && s.Gateway != "" {
			v4 = true
		}
	}
	if !v4 {
		t.Errorf("StatusBlock has no IPv4 address with a gateway: %+v", eth.Subnets)
	}

	for _, host := range []string{"127.0.0.1", "::1"} {
		pastatest.MustAnswer(t, "tcp", pastatest.HostPort(host, single), "web")
		for i := uint16(0); i < 3; i++ {
			pastatest.MustAnswer(t, "tcp", pastatest.HostPort(host, first+i), fmt.Sprintf("tcp-%d", 5000+i))
			pastatest.MustAnswer(t, "udp", pastatest.HostPort(host, first+i), fmt.Sprintf("udp-%d", 5000+i))
		}
	}
	if len(processesUnder(t, dataDir)) != 1 {
		t.Errorf("processes under %s after setup: %v, want one pasta", dataDir, processesUnder(t, dataDir))
	}

	c.mustRun(t, "teardown", n.Path)
	for _, host := range []string{"127.0.0.1", "::1"} {
		pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort(host, single), "web")
		pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort(host, first), "tcp-5000")
		pastatest.MustNotAnswer(t, "udp", pastatest.HostPort(host, first+2), "udp-5002")
	}
	assertNothingLeft(t, dataDir)
	c.mustRun(t, "teardown", n.Path) // already gone: still success
}

// TestNetavarkTakenPort: a published port that another program holds on
// the host fails setup with a message that names the port and the
// reason, and leaves no pasta, record or listener behind (netavark does
// not tear down a network whose setup failed).
func TestNetavarkTakenPort(t *testing.T) {
	n := pastatest.NewNetNS(t)
	dataDir := pastatest.TempDir(t, "nv-data-")
	ports := pastatest.FreePorts(t, "tcp", 2)
	// pasta binds the rules in order of port and stops at the first that
	// fails: with the taken port first, the free one does not listen
	// either, and the message must tell the two apart.
	taken, free := min(ports[0], ports[1]), max(ports[0], ports[1])
	holder, err := net.Listen("tcp", fmt.Sprintf(":%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	c := newNVCall(t, []nvNetwork{{Name: "nvnet-" + n.Name, Driver: "passt-portmap", Options: nvOptions(t, dataDir)}}, []nvPort{
		{ContainerPort: 80, HostPort: free, Protocol: "tcp", Range: 1},
		{ContainerPort: 81, HostPort: taken, Protocol: "tcp", Range: 1},
	})
	pastatest.ServeTCP(t, n, ":80", "web")

	out, errOut, err := c.run(t, "setup", n.Path)
	if err == nil {
		t.Fatalf("setup with port %d taken succeeded: %s", taken, out)
	}
	msg := out + errOut
	for _, want := range []string{
		"exit code 101",
		fmt.Sprintf("host port %d/TCP is held by %s (pid %d)", taken, selfComm(t), os.Getpid()),
		fmt.Sprintf("blocked by an earlier rule of the table, this update's HOST TCP [*]:%d", taken),
		fmt.Sprintf("so HOST TCP [*]:%d  =>  80 could not listen", free),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("setup's error does not say %q: %s", want, msg)
		}
	}
	assertNothingLeft(t, dataDir)
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", free), "web")
	if out := n.IP(t, "-o", "link", "show"); strings.Contains(out, "eth0") {
		t.Errorf("the namespace still has pasta's interface: %s", out)
	}
	c.mustRun(t, "teardown", n.Path) // a teardown after all still succeeds
}

// selfComm is this process's name, as the kernel shows it.
func selfComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestNetavarkMissingNetns: netavark refuses setup and teardown for a
// namespace that does not exist before it runs the plugin; the plugin,
// run on its own with such a path, answers with netavark's error JSON and
// leaves nothing behind.
func TestNetavarkMissingNetns(t *testing.T) {
	dataDir := pastatest.TempDir(t, "nv-data-")
	missing := "/run/netns/nv-missing-" + fmt.Sprint(time.Now().UnixNano())
	c := newNVCall(t, []nvNetwork{{Name: "nvnet-missing", Driver: "passt-portmap", Options: nvOptions(t, dataDir)}},
		[]nvPort{{ContainerPort: 80, HostPort: pastatest.FreePort(t, "tcp"), Protocol: "tcp", Range: 1}})
	for _, verb := range []string{"setup", "teardown"} {
		out, errOut, err := c.run(t, verb, missing)
		if err == nil {
			t.Errorf("netavark %s on a missing namespace succeeded: %s", verb, out)
		}
		if !strings.Contains(out+errOut, "namespace") && !strings.Contains(out+errOut, "netns") {
			t.Errorf("netavark %s's error does not say the namespace is the problem: %s %s", verb, out, errOut)
		}
	}
	assertNothingLeft(t, dataDir)

	// The plugin itself, as netavark would run it.
	exec1 := map[string]any{"container_id": c.containerID, "container_name": "ctr", "port_mappings": c.ports,
		"network": map[string]any{"name": "nvnet-missing", "driver": "passt-portmap", "id": "1", "options": nvOptions(t, dataDir),
			"network_interface": nil, "subnets": nil, "routes": nil, "ipam_options": nil, "network_dns_servers": nil,
			"dns_enabled": false, "internal": false, "ipv6_enabled": false},
		"network_options": map[string]any{"interface_name": "eth0", "aliases": nil, "static_ips": nil, "static_mac": nil, "options": nil}}
	in, err := json.Marshal(exec1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), netavarkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(managedPlugin(t), "passt-portmap"), "setup", missing)
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout = &out
	err = cmd.Run()
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	var je struct {
		Error string `json:"error"`
	}
	if err == nil || dec.Decode(&je) != nil || !strings.Contains(je.Error, missing) || dec.More() {
		t.Errorf("plugin setup on a missing namespace: %v, stdout %q, want {\"error\"} naming %s", err, out.String(), missing)
	}
	assertNothingLeft(t, dataDir)
}

// TestNetavarkTwoNetworks: a container on two networks, a passt-portmap
// one and one whose plugin fails. netavark sets networks up in a random
// order (a hash map); when passt-portmap's went first, netavark tears it
// down after the other fails, and nothing of it stays: port closed, no
// pasta, no record. The failing plugin, a stub, notes whether
// passt-portmap's interface was already there; the call is repeated until
// that order has been seen.
func TestNetavarkTwoNetworks(t *testing.T) {
	stubDir := t.TempDir()
	marker := filepath.Join(stubDir, "order")
	stub := fmt.Sprintf(`#!/bin/sh
# A netavark plugin whose setup always fails. It notes whether the
# namespace already had eth0 (passt-portmap's network set up first).
if [ "$1" = setup ]; then
	if nsenter --net="$2" ip link show eth0 >/dev/null 2>&1; then echo after >%[1]s; else echo before >%[1]s; fi
	echo '{"error":"stub network refuses"}'
	exit 1
fi
exit 0
`, marker)
	if err := os.WriteFile(filepath.Join(stubDir, "nvstub"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}

	sawAfter := false
	for try := 0; try < 12 && !sawAfter; try++ {
		n := pastatest.NewNetNS(t)
		dataDir := pastatest.TempDir(t, "nv-data-")
		port := pastatest.FreePort(t, "tcp")
		pastatest.ServeTCP(t, n, ":80", "web")
		c := newNVCall(t, []nvNetwork{
			{Name: "eth0-pp-" + n.Name, Driver: "passt-portmap", Options: nvOptions(t, dataDir)},
			{Name: "eth1-stub-" + n.Name, Driver: "nvstub"},
		}, []nvPort{{ContainerPort: 80, HostPort: port, Protocol: "tcp", Range: 1}})
		// interface names follow the order of c.networks: eth0 is passt-portmap's.
		c.pluginDirs = append(c.pluginDirs, stubDir)
		_ = os.Remove(marker)

		out, errOut, err := c.run(t, "setup", n.Path)
		if err == nil || !strings.Contains(out+errOut, "stub network refuses") {
			t.Fatalf("setup with a failing network: %v, %s %s", err, out, errOut)
		}
		order, rerr := os.ReadFile(marker)
		if rerr != nil {
			t.Fatalf("the stub did not run: %v", rerr)
		}
		sawAfter = strings.TrimSpace(string(order)) == "after"
		t.Logf("try %d: the stub ran %s passt-portmap's setup", try, strings.TrimSpace(string(order)))
		pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "web")
		assertNothingLeft(t, dataDir)
		if out := n.IP(t, "-o", "link", "show"); strings.Contains(out, "eth0") {
			t.Errorf("the namespace still has pasta's interface: %s", out)
		}
	}
	if !sawAfter {
		t.Fatal("netavark never set up passt-portmap's network before the failing one in 12 tries")
	}
}

// TestNetavarkDispatch: the one binary answers netavark's info and
// create (what Podman runs for `podman network create -d passt-portmap`)
// when its first argument says so, and speaks CNI whenever CNI_COMMAND is
// set, whatever its arguments.
func TestNetavarkDispatch(t *testing.T) {
	bin := filepath.Join(managedPlugin(t), "passt-portmap")
	run := func(stdin string, env []string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), netavarkTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		return string(out), err
	}

	out, err := run("", nil, "info")
	var info map[string]string
	if err != nil || json.Unmarshal([]byte(out), &info) != nil || info["api_version"] != "1.0.0" || info["version"] == "" {
		t.Errorf("info: %v, %q", err, out)
	}

	// The network JSON as Podman 5 writes it for a plugin driver.
	network := `{"name":"ppnet","id":"6f3c5d1e9a2b4c7d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d","driver":"passt-portmap",` +
		`"network_interface":"","created":"2026-11-30T10:00:00.123456789Z","ipv6_enabled":false,"internal":false,` +
		`"dns_enabled":false,"options":{"weak":"true","timeout":"3s"},"ipam_options":{"driver":"host-local"}}`
	out, err = run(network, nil, "create")
	var got, want map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || json.Unmarshal([]byte(network), &want) != nil {
		t.Fatalf("create: %v, %q", err, out)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("create printed %s, want the network back unchanged", out)
	}
	out, err = run(strings.Replace(network, `"weak":"true"`, `"weak":"sometimes"`, 1), nil, "create")
	if err == nil || !strings.HasPrefix(out, `{"error":"`) || !strings.Contains(out, `network.options.weak: \"sometimes\": want true or false"}`) {
		t.Errorf("create with a bad option: %v, %q", err, out)
	}

	// CNI_COMMAND wins over an argument that names a netavark command.
	out, err = run(`{"cniVersion":"1.1.0"}`, []string{"CNI_COMMAND=VERSION"}, "info")
	if err != nil || !strings.Contains(out, `"supportedVersions"`) {
		t.Errorf("CNI VERSION with the argument info: %v, %q", err, out)
	}
}

// TestNetavarkMapHostLoopback: the network option mapHostLoopback (closed
// by default, as for CNI) reaches the managed pasta through netavark: from
// inside the container, the mapped address is the host's loopback.
func TestNetavarkMapHostLoopback(t *testing.T) {
	n := pastatest.NewNetNS(t)
	dataDir := pastatest.TempDir(t, "nv-data-")
	opts := nvOptions(t, dataDir)
	opts["mapHostLoopback"] = "169.254.1.2"
	c := newNVCall(t, []nvNetwork{{Name: "nvnet-" + n.Name, Driver: "passt-portmap", Options: opts}}, nil)
	t.Cleanup(func() { c.run(t, "teardown", n.Path) })
	port := hostLoopbackServer(t, "host loopback")

	c.mustRun(t, "setup", n.Path)
	dst := net.JoinHostPort("169.254.1.2", fmt.Sprint(port))
	if got, err := askFromNetns(n, dst); err != nil || got != "host loopback" {
		t.Fatalf("from the container to %s: %q, %v; want the host's 127.0.0.1:%d", dst, got, err, port)
	}
	c.mustRun(t, "teardown", n.Path)
	assertNothingLeft(t, dataDir)
}
