package forwarder

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPaths(t *testing.T) {
	got := Paths("/var/lib/cni/passt-portmap/ab12")
	want := Instance{
		Dir:       "/var/lib/cni/passt-portmap/ab12",
		Socket:    "/var/lib/cni/passt-portmap/ab12/pasta.sock",
		PIDFile:   "/var/lib/cni/passt-portmap/ab12/pasta.pid",
		LogFile:   "/var/lib/cni/passt-portmap/ab12/pasta.log",
		OutFile:   "/var/lib/cni/passt-portmap/ab12/pasta.out",
		IdentFile: "/var/lib/cni/passt-portmap/ab12/pasta.id",
	}
	if got != want {
		t.Fatalf("Paths = %+v, want %+v", got, want)
	}
}

func TestInstanceForIsAbsolute(t *testing.T) {
	inst, err := instanceFor("rel/dir")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inst.Socket, "/") || !strings.HasSuffix(inst.Socket, "/rel/dir/pasta.sock") {
		t.Fatalf("socket %q: want an absolute path ending in rel/dir/pasta.sock", inst.Socket)
	}
	if _, err := instanceFor(""); err == nil {
		t.Fatal("empty directory accepted")
	}
}

func TestBuildArgs(t *testing.T) {
	inst := Paths("/d")
	base := []string{"--config-net", "-c", "/d/pasta.sock", "-P", "/d/pasta.pid", "-l", "/d/pasta.log"}
	closed := []string{"-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw"}
	dns := []string{"--dns-forward", DNSForwardAddr}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	root := []string{"--runas", "0"}
	tests := []struct {
		name string
		cfg  Config
		euid int
		want []string
	}{
		{"root", Config{NetNS: "/run/netns/x"}, 0,
			cat(base, root, closed, dns, []string{"--netns", "/run/netns/x"})},
		{"rootless: no --runas", Config{NetNS: "/run/user/1000/netns/x"}, 1000,
			cat(base, closed, dns, []string{"--netns", "/run/user/1000/netns/x"})},
		{"interface name", Config{NetNS: "/n", IfName: "eth0"}, 0,
			cat(base, root, closed, dns, []string{"-I", "eth0", "--netns", "/n"})},
		{"extra args kept in order before --netns", Config{NetNS: "/n", Args: []string{"--map-guest-addr", "169.254.1.2", "-q"}}, 0,
			cat(base, root, closed, dns, []string{"--map-guest-addr", "169.254.1.2", "-q", "--netns", "/n"})},
		{"own -I replaces IfName", Config{NetNS: "/n", IfName: "eth0", Args: []string{"-Inet1"}}, 0,
			cat(base, root, closed, dns, []string{"-Inet1", "--netns", "/n"})},
		{"own --dns-forward replaces the default", Config{NetNS: "/n", Args: []string{"--dns-f=192.0.2.53"}}, 0,
			cat(base, root, closed, []string{"--dns-f=192.0.2.53", "--netns", "/n"})},
		{"host loopback mapped", Config{NetNS: "/n", MapHostLoopback: []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("fd99::2")}}, 0,
			cat(base, root, closed, []string{"--map-host-loopback", "169.254.1.2", "--map-host-loopback", "fd99::2"}, dns, []string{"--netns", "/n"})},
		{"loopback to host", Config{NetNS: "/n", LoopbackToHost: true}, 0,
			cat(base, root, []string{"-t", "none", "-u", "none", "-T", "auto", "-U", "auto", "--no-map-gw"}, dns, []string{"--netns", "/n"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildArgs(tt.cfg, inst, tt.euid)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("buildArgs:\n got %q\nwant %q", got, tt.want)
			}
			if v, ok := argValue(got, "conf-path"); !ok || v != inst.Socket {
				t.Fatalf("the arguments built do not name the socket: %q", got)
			}
			if ns, ok := argValue(got, "netns"); !ok || ns != tt.cfg.NetNS {
				t.Fatalf("--netns in built args = %q, %v", ns, ok)
			}
		})
	}
}

func TestCheckArgs(t *testing.T) {
	ok := [][]string{
		nil,
		{"--map-guest-addr", "169.254.1.2"},
		{"--map-guest-addr=169.254.1.2"},
		{"-d", "--dns", "192.0.2.53", "-D192.0.2.54", "-S", "example.org"},
		{"-4q", "-m1400", "-I", "net1"},
		{"-4I", "net1"},           // combined, the value in the next entry
		{"-4Inet1"},               // combined, the value attached
		{"--mtu", "-c"},           // "-c" is --mtu's value, not an option
		{"--ns-if=net1", "--tra"}, // unambiguous prefixes
		{"--no-dhcp"},             // exact name, though a prefix of --no-dhcpv6
		{"--dns", ""},             // an empty value (pasta: no DNS)
		{"--dns-forward", "10.0.0.53"},
		// Addresses pasta uses on the host's side, not loopback.
		{"--outbound", "192.0.2.7", "--map-guest-addr", "169.254.1.2"},
		{"-o0.0.0.0"}, // pasta's default source address
		{"--dns-host", "192.0.2.53", "--dns-forward", "169.254.1.1"},
		{"-a", "192.0.2.9/24", "-g", "192.0.2.1", "--map-guest-addr", "none"},
		{"--outbound-if4", "eth0", "-i", "eth0"},
		{"--dns", "127.0.0.1"}, // the container's own loopback
		{"--dns-forward", "127.0.0.53"},
	}
	for _, a := range ok {
		if err := CheckArgs(a); err != nil {
			t.Errorf("CheckArgs(%q): %v", a, err)
		}
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"-c", "/x"}, `pastaArgs[0] "-c": option -c (--conf-path) is set by the managed forwarder itself`},
		{[]string{"-q", "--conf-path=/x"}, `pastaArgs[1] "--conf-path=/x": option -c (--conf-path)`},
		{[]string{"-4c", "/x"}, `pastaArgs[0] "-4c": option -c (--conf-path)`},
		{[]string{"-4c/x"}, `pastaArgs[0] "-4c/x": option -c (--conf-path)`},
		{[]string{"-q4P/x"}, "-P (--pid)"},
		{[]string{"--conf-p", "/x"}, "-c (--conf-path)"},
		{[]string{"--conf", "/x"}, `pastaArgs[0] "--conf": option --conf is ambiguous (--conf-path, --config-net)`},
		{[]string{"--conf=/x"}, "is ambiguous"},
		{[]string{"--netns", "/n"}, "--netns is set by"},
		{[]string{"--netn=/n"}, "is ambiguous"},
		{[]string{"--runas", "1000"}, "--runas"},
		{[]string{"--run=1000"}, "--runas"},
		{[]string{"-f"}, "--foreground"},
		{[]string{"-l", "/tmp/log"}, "--log-file"},
		{[]string{"--log-f=/tmp/log"}, "--log-file"},
		{[]string{"--config-net"}, "--config-net"},
		{[]string{"--userns", "/proc/1/ns/user"}, "--userns"},
		{[]string{"-F", "3"}, "--fd"},
		{[]string{"-p", "/tmp/cap"}, "-p (--pcap) writes a file"},
		{[]string{"--pc=/tmp/cap"}, "--pcap"},
		{[]string{"-t", "22"}, "-t (--tcp-ports) would forward ports outside"},
		{[]string{"--udp-ports=53"}, "--udp-ports"},
		{[]string{"-T", "auto"}, "-T (--tcp-ns) opens the host's loopback: use loopbackToHost instead"},
		{[]string{"-qU5432"}, "-U (--udp-ns)"},
		{[]string{"--no-map-gw"}, "mapHostLoopback"},
		{[]string{"--map-host-loopback", "169.254.1.2"}, "mapHostLoopback"},
		{[]string{"--map-h=169.254.1.2"}, "mapHostLoopback"},
		{[]string{"--no-netns-quit"}, "when it quits"},
		{[]string{"--chroot-fallback"}, "sandbox"},
		{[]string{"--help"}, "exit"},
		{[]string{"--vers"}, "exit"},
		{[]string{"-s", "/x"}, "passt or vhost-user"},
		{[]string{"--", "sh"}, `pastaArgs[0] "--": ends pasta's options`},
		{[]string{"-q", "sh"}, `pastaArgs[1] "sh": is not an option: pasta would run it`},
		{[]string{"-"}, "is not an option"},
		{[]string{"--mtu"}, `"--mtu": option -m (--mtu) needs a value`},
		{[]string{"-4m"}, "needs a value"},
		{[]string{"--quiet=1"}, "takes no value"},
		{[]string{"--bogus"}, "--bogus is not an option of pasta"},
		{[]string{"-x"}, "-x is not an option of pasta"},
		{[]string{"-4x"}, "-x is not an option"},
		{[]string{"--=x"}, "is not an option"},
		{[]string{"--no-c"}, "ambiguous"},
		{[]string{"--mtu", "1400", "-c", "/x"}, "pastaArgs[2]"},
		// Values that aim the container at the host's loopback.
		{[]string{"--outbound", "127.0.0.1", "--map-guest-addr", "169.254.1.2"}, `pastaArgs[0] "--outbound": option -o (--outbound) with value "127.0.0.1" would aim the container at the host's loopback`},
		{[]string{"-o127.0.0.2"}, "-o (--outbound) with value \"127.0.0.2\""},
		{[]string{"--outbound=::1"}, "host's loopback"},
		{[]string{"-o", "::ffff:127.0.0.1"}, "host's loopback"},
		{[]string{"-o", "::1%lo"}, "host's loopback"},
		{[]string{"-o", "localhost"}, "not an IP address"},
		{[]string{"-q", "--dns-host", "127.0.0.1", "--dns-forward", "169.254.1.3"}, `pastaArgs[1] "--dns-host": option --dns-host with value "127.0.0.1"`},
		{[]string{"--dns-h=0.0.0.0"}, "host's loopback"},
		{[]string{"--dns-host", "::"}, "host's loopback"},
		{[]string{"--outbound-if4", "lo"}, "loopback interface"},
		{[]string{"--outbound-if6=lo"}, "loopback interface"},
		{[]string{"-ilo"}, "-i (--interface) with value \"lo\" names the host's loopback interface"},
		{[]string{"-a", "127.0.0.1/8", "--map-guest-addr", "169.254.1.2"}, "-a (--address)"},
		{[]string{"--map-guest-addr", "127.0.0.1"}, "--map-guest-addr"},
		{[]string{"-g", "::1"}, "-g (--gateway)"},
	}
	for _, b := range bad {
		err := CheckArgs(b.args)
		var ae *ArgError
		if err == nil || !strings.Contains(err.Error(), b.want) || !errors.As(err, &ae) {
			t.Errorf("CheckArgs(%q) = %v, want an *ArgError containing %q", b.args, err, b.want)
		}
	}
}

// TestPastaOptionsTable: the table mirrors getopt_long's: one entry per
// long name and short letter, and the short letters with their values
// are pasta's optstring.
func TestPastaOptionsTable(t *testing.T) {
	const optstring = "dqfel:hs:c:F:I:p:P:m:a:n:M:g:i:o:D:S:H:461t:u:T:U:"
	want := map[byte]bool{}
	for i := 0; i < len(optstring); i++ {
		arg := i+1 < len(optstring) && optstring[i+1] == ':'
		want[optstring[i]] = arg
		if arg {
			i++
		}
	}
	longs := map[string]bool{}
	got := map[byte]bool{}
	for _, o := range pastaOptions {
		if longs[o.long] {
			t.Errorf("--%s twice", o.long)
		}
		longs[o.long] = true
		if o.short != 0 {
			if _, dup := got[o.short]; dup {
				t.Errorf("-%c twice", o.short)
			}
			got[o.short] = o.hasArg
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("short options %v, want pasta's optstring %v", got, want)
	}
}

func TestCheckMapHostLoopback(t *testing.T) {
	p := netip.MustParseAddr
	ok := [][]netip.Addr{nil, {p("169.254.1.2")}, {p("fd99::2")}, {p("169.254.1.2"), p("fd99::2")}}
	for _, a := range ok {
		if err := CheckMapHostLoopback(a); err != nil {
			t.Errorf("CheckMapHostLoopback(%v): %v", a, err)
		}
	}
	bad := [][]netip.Addr{{p("127.0.0.1")}, {p("::1")}, {p("0.0.0.0")}, {p("224.0.0.1")}, {p("255.255.255.255")},
		{p("fe80::1%eth0")}, {p("::ffff:169.254.1.2")}, {p("169.254.1.2"), p("169.254.1.3")}, {p("fd99::2"), p("fd99::3")}, {{}}}
	for _, a := range bad {
		if err := CheckMapHostLoopback(a); err == nil {
			t.Errorf("CheckMapHostLoopback(%v) accepted", a)
		}
	}
}

func TestNsIfName(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{IfName: "eth0"}, "eth0"},
		{Config{IfName: "eth0", Args: []string{"-I", "net1"}}, "net1"},
		{Config{IfName: "eth0", Args: []string{"-Inet1"}}, "net1"},
		{Config{IfName: "eth0", Args: []string{"--ns-ifname=net1"}}, "net1"},
		{Config{IfName: "eth0", Args: []string{"--ns-ifname", "net1", "-q"}}, "net1"},
		{Config{IfName: "eth0", Args: []string{"--map-guest-addr", "-I"}}, "eth0"}, // -I is the value of --map-guest-addr
		{Config{IfName: "eth0", Args: []string{"-4Inet1"}}, "net1"},
		{Config{IfName: "eth0", Args: []string{"--ns-if", "net1"}}, "net1"},
	}
	for _, tt := range tests {
		if got := nsIfName(tt.cfg); got != tt.want {
			t.Errorf("nsIfName(%+v) = %q, want %q", tt.cfg, got, tt.want)
		}
	}
}
