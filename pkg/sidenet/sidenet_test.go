package sidenet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// pod is a network namespace standing for a pod whose network an earlier
// plugin made: eth0 (one end of a veth whose other end stays in the pod
// too, as a dummy stand-in) with an IPv4 and an IPv6 address and default
// routes, and a tap named pasta0 standing for pasta's.
type pod struct {
	name, path string
}

func newPod(t *testing.T) *pod {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests make network namespaces: run them as root")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := &pod{name: "ppsn-" + hex.EncodeToString(b)}
	p.path = "/run/netns/" + p.name
	run(t, "ip", "netns", "add", p.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.name).Run() })
	p.ip(t, "link", "set", "lo", "up")
	p.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	p.ip(t, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	p.ip(t, "-6", "addr", "add", "fd99::2/64", "dev", "eth0", "nodad")
	p.ip(t, "link", "set", "eth0", "up")
	p.ip(t, "link", "set", "peer0", "up")
	p.ip(t, "route", "add", "default", "via", "10.99.0.1")
	p.ip(t, "-6", "route", "add", "default", "via", "fd99::1")
	return p
}

// addTap makes the tap pasta would make.
func (p *pod) addTap(t *testing.T) {
	t.Helper()
	p.ip(t, "tuntap", "add", "dev", "pasta0", "mode", "tap")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *pod) ip(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", p.name}, args...)...)
}

// state is what the pod network made, as ip prints it: the main table of
// each family and the rules.
func (p *pod) mainState(t *testing.T) string {
	t.Helper()
	return p.ip(t, "-4", "route", "show", "table", "main") + p.ip(t, "-6", "route", "show", "table", "main") +
		p.ip(t, "-4", "rule") + p.ip(t, "-6", "rule")
}

func (p *pod) side(t *testing.T) Side {
	t.Helper()
	s, err := Plan(p.path, DefaultIfName, DefaultTable, DefaultNetwork4, DefaultNetwork6)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name       string
		net4, net6 string
		want       string // Addr4 Gateway4 Addr6 Gateway6, or the error
	}{
		{"defaults", "169.254.100.0/30", "fd41:e00e:44f8::/64", "169.254.100.2/30 169.254.100.1 fd41:e00e:44f8::2/64 fe80::1"},
		{"IPv4 only", "169.254.7.8/29", "", "169.254.7.10/29 169.254.7.9 invalid Prefix invalid IP"},
		{"IPv6 only", "", "fd00:1::100/120", "invalid Prefix invalid IP fd00:1::102/120 fe80::1"},
		{"not link-local", "10.0.0.0/30", "", "side network 10.0.0.0/30: want an IPv4 link-local prefix (inside 169.254.0.0/16) of 16 to 30 bits"},
		{"too small", "169.254.1.0/31", "", "side network 169.254.1.0/31: want an IPv4 link-local prefix (inside 169.254.0.0/16) of 16 to 30 bits"},
		{"IPv6 not unique local", "", "2001:db8::/64", "side network 2001:db8::/64: want an IPv6 unique local prefix (inside fc00::/7) of 7 to 126 bits"},
		{"IPv6 link-local", "", "fe80::/64", "side network fe80::/64: want an IPv6 unique local prefix (inside fc00::/7) of 7 to 126 bits"},
		{"none", "", "", "side: no address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n4, n6 netip.Prefix
			if tc.net4 != "" {
				n4 = netip.MustParsePrefix(tc.net4)
			}
			if tc.net6 != "" {
				n6 = netip.MustParsePrefix(tc.net6)
			}
			s, err := Plan("/run/netns/x", "pasta0", DefaultTable, n4, n6)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = strings.Join([]string{s.Addr4.String(), s.Gateway4.String(), s.Addr6.String(), s.Gateway6.String()}, " ")
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good, err := Plan("/x", "pasta0", DefaultTable, DefaultNetwork4, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Side)
		want string
	}{
		{"main table", func(s *Side) { s.Table = 254 }, "side routing table 254"},
		{"local table", func(s *Side) { s.Table = 255 }, "side routing table 255"},
		{"no table", func(s *Side) { s.Table = 0 }, "side routing table 0"},
		{"long name", func(s *Side) { s.IfName = "a-very-long-name" }, "side interface name"},
		{"late priority", func(s *Side) { s.Priority = 32766 }, "side rule priority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// Setup leaves the pod network's main tables and rules as they were
// (IPv6 address generation off, addresses without prefix routes), adds
// its rules and its table's routes, passes Check; Teardown takes the
// rules and routes away again.
func TestSetupCheckTeardown(t *testing.T) {
	p := newPod(t)
	s := p.side(t)
	before := p.mainState(t)
	rulesBefore := p.ip(t, "-4", "rule") + p.ip(t, "-6", "rule")
	if err := Free(s, false); err != nil {
		t.Fatalf("Free: %v", err)
	}
	p.addTap(t)
	if err := Setup(s); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if err := Setup(s); err != nil {
		t.Fatalf("Setup again: %v", err)
	}
	main := p.ip(t, "-4", "route", "show", "table", "main") + p.ip(t, "-6", "route", "show", "table", "main")
	if !strings.HasPrefix(before, main) || strings.Contains(main, "pasta0") {
		t.Errorf("the main tables changed:\n%s\nwant\n%s", main, before)
	}
	rules := p.ip(t, "-4", "rule") + p.ip(t, "-6", "rule")
	for _, want := range []string{"500:\tfrom 169.254.100.2 lookup 20563", "500:\tfrom fd41:e00e:44f8::2 lookup 20563"} {
		if strings.Count(rules, want) != 1 {
			t.Errorf("rules hold %q %d times, want once:\n%s", want, strings.Count(rules, want), rules)
		}
	}
	table := p.ip(t, "-4", "route", "show", "table", "20563") + p.ip(t, "-6", "route", "show", "table", "20563")
	for _, want := range []string{"default via 169.254.100.1 dev pasta0 onlink", "default via fe80::1 dev pasta0"} {
		if !strings.Contains(table, want) {
			t.Errorf("table 20563 lacks %q:\n%s", want, table)
		}
	}
	addrs := p.ip(t, "addr", "show", "dev", "pasta0")
	for _, want := range []string{"inet 169.254.100.2/30 brd 169.254.100.3 scope global noprefixroute pasta0", "inet6 fd41:e00e:44f8::2/64 scope global nodad deprecated noprefixroute", "preferred_lft 0sec", "mtu 65520", ",UP>"} {
		if !strings.Contains(addrs, want) {
			t.Errorf("pasta0 lacks %q:\n%s", want, addrs)
		}
	}
	if strings.Count(addrs, "inet6") != 1 {
		t.Errorf("pasta0 has an IPv6 address of its own besides the side's:\n%s", addrs)
	}
	if r, err := Check(s); err != nil || len(r) != 0 {
		t.Errorf("Check after Setup: %v %v", r, err)
	}

	// Behind its back: the IPv4 route, then an IPv6 rule.
	p.ip(t, "route", "del", "default", "table", "20563")
	p.ip(t, "-6", "rule", "del", "from", "fd41:e00e:44f8::2", "lookup", "20563", "pref", "500")
	r, err := Check(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r, "|"); !strings.Contains(got, "routing table 20563 lacks the default route via 169.254.100.1 dev pasta0") ||
		!strings.Contains(got, "no rule 500: from fd41:e00e:44f8::2 lookup 20563") || len(r) != 2 {
		t.Errorf("Check: %q", r)
	}
	if err := Setup(s); err != nil {
		t.Fatalf("Setup repairs: %v", err)
	}
	if r, err := Check(s); err != nil || len(r) != 0 {
		t.Errorf("Check after the repair: %v %v", r, err)
	}

	if err := Teardown(s); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if got := p.ip(t, "-4", "rule") + p.ip(t, "-6", "rule"); got != rulesBefore {
		t.Errorf("rules after Teardown:\n%s\nwant\n%s", got, rulesBefore)
	}
	if got := p.ip(t, "-4", "route", "show", "table", "20563") + p.ip(t, "-6", "route", "show", "table", "20563"); got != "" {
		t.Errorf("table 20563 after Teardown: %s", got)
	}
	if err := Teardown(s); err != nil {
		t.Errorf("Teardown again: %v", err)
	}
	if r, _ := Check(s); len(r) == 0 {
		t.Error("Check passes after Teardown")
	}
}

// The egress filter drops a connection a pod process opens from the
// side's address: the SYN never leaves the tap.
func TestFilterInstalled(t *testing.T) {
	p := newPod(t)
	p.addTap(t)
	s := p.side(t)
	if err := Setup(s); err != nil {
		t.Fatal(err)
	}
	out := run(t, "tc", "-n", p.name, "filter", "show", "dev", "pasta0", "egress")
	if !strings.Contains(out, "bpf") || !strings.Contains(out, "direct-action") {
		t.Errorf("tc filter show: %s", out)
	}
	run(t, "tc", "-n", p.name, "filter", "del", "dev", "pasta0", "egress")
	r, err := Check(s)
	if err != nil || len(r) != 1 || !strings.Contains(r[0], "egress filter") {
		t.Errorf("Check without the filter: %q %v", r, err)
	}
}

func TestFreeClashes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, p *pod)
		part  Part
		want  string
	}{
		{"interface exists", func(t *testing.T, p *pod) { p.addTap(t) }, PartInterface, "interface pasta0 already exists (tuntap)"},
		{"table in use", func(t *testing.T, p *pod) {
			p.ip(t, "route", "add", "10.7.0.0/16", "via", "10.99.0.1", "table", "20563")
		}, PartTable, "routing table 20563 holds a route of the pod's network: 10.7.0.0/16 via 10.99.0.1 dev eth0"},
		{"rule on the table", func(t *testing.T, p *pod) {
			p.ip(t, "rule", "add", "fwmark", "7", "lookup", "20563")
		}, PartTable, `already looks up table 20563`},
		{"address in the network", func(t *testing.T, p *pod) {
			p.ip(t, "addr", "add", "169.254.100.5/24", "dev", "eth0")
		}, PartNetwork, "interface eth0 has 169.254.100.5/24, in the side's network 169.254.100.0/30"},
		{"IPv6 address", func(t *testing.T, p *pod) {
			p.ip(t, "-6", "addr", "add", "fd41:e00e:44f8::2/64", "dev", "eth0", "nodad")
		}, PartNetwork, "interface eth0 has the side's address fd41:e00e:44f8::2"},
		{"IPv6 network", func(t *testing.T, p *pod) {
			p.ip(t, "-6", "addr", "add", "fd41:e00e:44f8::77/48", "dev", "eth0", "nodad")
		}, PartNetwork, "interface eth0 has fd41:e00e:44f8::77/48, in the side's network fd41:e00e:44f8::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPod(t)
			tc.setup(t, p)
			err := Free(p.side(t), false)
			var ce *ClashError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Free: %v, want a clash %q", err, tc.want)
			}
			if parts := ce.Parts(); len(parts) != 1 || parts[0] != tc.part {
				t.Errorf("parts %v, want %v", parts, tc.part)
			}
		})
	}
}

func TestSetupRefusesForeignTable(t *testing.T) {
	p := newPod(t)
	p.addTap(t)
	p.ip(t, "route", "add", "10.7.0.0/16", "via", "10.99.0.1", "table", "20563")
	before := p.mainState(t)
	err := Setup(p.side(t))
	var ce *ClashError
	if !errors.As(err, &ce) {
		t.Fatalf("Setup: %v, want a clash", err)
	}
	if got := p.mainState(t); got != before {
		t.Errorf("a refused Setup changed the pod:\n%s\nwant\n%s", got, before)
	}
	if out := p.ip(t, "addr", "show", "dev", "pasta0"); strings.Contains(out, "169.254") {
		t.Errorf("a refused Setup configured pasta0: %s", out)
	}
}

func TestOwnNamespaceRefused(t *testing.T) {
	s, err := Plan("/proc/self/ns/net", "pasta0", DefaultTable, DefaultNetwork4, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	free := func(s Side) error { return Free(s, false) }
	for name, fn := range map[string]func(Side) error{"Setup": Setup, "Teardown": Teardown, "Free": free} {
		if err := fn(s); err == nil || !strings.Contains(err.Error(), "the plugin's own") {
			t.Errorf("%s in the test's own namespace: %v", name, err)
		}
	}
}

func TestGoneNamespace(t *testing.T) {
	p := newPod(t)
	p.addTap(t)
	s := p.side(t)
	ino, err := Inode(p.path)
	if err != nil {
		t.Fatal(err)
	}
	s.Inode = ino + 1 // another namespace is at the path now
	if err := Teardown(s); err != nil {
		t.Errorf("Teardown of a replaced namespace: %v", err)
	}
	if r, err := Check(s); err != nil || len(r) != 1 || !strings.Contains(r[0], "gone") {
		t.Errorf("Check of a replaced namespace: %q %v", r, err)
	}
	s.NetNS = "/run/netns/ppsn-missing"
	if err := Teardown(s); err != nil {
		t.Errorf("Teardown of a missing namespace: %v", err)
	}
}

// A pasta that died took its tap and the table's routes with it, but not
// the rules: the next start finds them its own, not a clash, and Setup
// keeps one of each.
func TestRestartAfterPastaDied(t *testing.T) {
	p := newPod(t)
	s := p.side(t)
	p.addTap(t)
	if err := Setup(s); err != nil {
		t.Fatal(err)
	}
	if err := Free(s, true); err != nil {
		t.Fatalf("Free with the side's own rules and tap left: %v", err)
	}
	if err := Free(s, false); err == nil {
		t.Fatal("Free takes a tap it was not told is its own")
	}
	p.ip(t, "link", "del", "pasta0")
	if err := Free(s, false); err != nil {
		t.Fatalf("Free with the side's own rules left: %v", err)
	}
	p.addTap(t)
	if err := Setup(s); err != nil {
		t.Fatal(err)
	}
	if r, err := Check(s); err != nil || len(r) != 0 {
		t.Errorf("Check: %q %v", r, err)
	}
	if rules := p.ip(t, "-4", "rule"); strings.Count(rules, "lookup 20563") != 1 {
		t.Errorf("rules:\n%s", rules)
	}
}
