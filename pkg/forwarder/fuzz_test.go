package forwarder

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// FuzzParsePID: never panics; what it accepts is a positive decimal that
// prints back to the input.
func FuzzParsePID(f *testing.F) {
	for _, s := range []string{"1", "6805\n", "", "0", "-1", "12 ", "0x10", "99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, err := parsePID(b)
		if err != nil {
			return
		}
		if pid <= 0 || strconv.Itoa(pid) != strings.TrimSuffix(string(b), "\n") {
			t.Fatalf("parsePID(%q) = %d", b, pid)
		}
	})
}

// FuzzParseStartupDNS: never panics; every nameserver is an address and
// no entry repeats.
func FuzzParseStartupDNS(f *testing.F) {
	f.Add([]byte(startup))
	f.Add([]byte("DNS:\n    10.0.0.53\n    NAT to host ::1: fd00::1\n"))
	f.Add([]byte("DNS search list:\n\texample.org\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dns := parseStartupDNS(b)
		seen := map[string]bool{}
		for _, ns := range dns.Nameservers {
			if _, err := netip.ParseAddr(ns); err != nil {
				t.Fatalf("nameserver %q is not an address", ns)
			}
			if seen[ns] {
				t.Fatalf("nameserver %q twice", ns)
			}
			seen[ns] = true
		}
		for _, s := range dns.Search {
			if s == "" || strings.ContainsAny(s, " \t\n:") || seen["search "+s] {
				t.Fatalf("bad or repeated search entry %q", s)
			}
			seen["search "+s] = true
		}
	})
}

// FuzzCheckArgs: never panics; arguments it accepts cannot change what
// the managed forwarder relies on: pasta, parsing the whole command line
// built with them, sees exactly one control socket (ours), our
// namespace, and no other refused option.
func FuzzCheckArgs(f *testing.F) {
	for _, s := range []string{"-4c\x00/x", "-4c/x", "--conf=/x", "--mtu\x00-c", "-q\x00sh", "--ns-if=net1\x00--tra", "--\x00x", "-4Inet1\x00--dns-f=10.0.0.53"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		var args []string
		if joined != "" {
			args = strings.Split(joined, "\x00")
		}
		if CheckArgs(args) != nil {
			return
		}
		inst := Paths("/d")
		built := buildArgs(Config{NetNS: "/n", Args: args}, inst, 0)
		parsed, err := parseArgs(built)
		if err != nil {
			t.Fatalf("accepted %q, but the command line built does not parse: %v", args, err)
		}
		own := map[string]int{}
		for _, p := range parsed {
			if p.opt.deny == "" {
				continue
			}
			own[p.opt.long]++
			switch p.opt.long {
			case "conf-path":
				if p.value != inst.Socket {
					t.Fatalf("accepted %q: control socket %q", args, p.value)
				}
			case "netns":
				if p.value != "/n" {
					t.Fatalf("accepted %q: namespace %q", args, p.value)
				}
			}
		}
		for _, name := range []string{"conf-path", "netns", "pid", "log-file", "runas"} {
			if own[name] != 1 {
				t.Fatalf("accepted %q: --%s %d times in %q", args, name, own[name], built)
			}
		}
	})
}

// FuzzStatPGID: never panics; a group id it returns is positive and
// written in the input after the command name.
func FuzzStatPGID(f *testing.F) {
	for _, s := range []string{"12 (pasta) S 1 12 12 0 -1", "13 (a) b) (c) S 1 77 77 0", "14 (sh) S 1", ")", "1 () S 0 0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, ok := statPGID(b)
		if !ok {
			return
		}
		i := strings.LastIndexByte(string(b), ')')
		if g <= 0 || !strings.Contains(string(b[i:]), strconv.Itoa(g)) {
			t.Fatalf("statPGID(%q) = %d", b, g)
		}
	})
}
