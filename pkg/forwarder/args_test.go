package forwarder

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestPaths(t *testing.T) {
	got := Paths("/var/lib/cni/passt-portmap/ab12")
	want := Instance{
		Socket:  "/var/lib/cni/passt-portmap/ab12/pasta.sock",
		PIDFile: "/var/lib/cni/passt-portmap/ab12/pasta.pid",
		LogFile: "/var/lib/cni/passt-portmap/ab12/pasta.log",
		OutFile: "/var/lib/cni/passt-portmap/ab12/pasta.out",
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
	tests := []struct {
		name string
		cfg  Config
		euid int
		want []string
	}{
		{"root", Config{NetNS: "/run/netns/x"}, 0,
			append(slices.Clone(base), "--runas", "0", "-t", "none", "-u", "none", "--netns", "/run/netns/x")},
		{"rootless: no --runas", Config{NetNS: "/run/user/1000/netns/x"}, 1000,
			append(slices.Clone(base), "-t", "none", "-u", "none", "--netns", "/run/user/1000/netns/x")},
		{"interface name", Config{NetNS: "/n", IfName: "eth0"}, 0,
			append(slices.Clone(base), "--runas", "0", "-t", "none", "-u", "none", "-I", "eth0", "--netns", "/n")},
		{"extra args kept in order before --netns", Config{NetNS: "/n", Args: []string{"--map-guest-addr", "169.254.1.2", "-q"}}, 0,
			append(slices.Clone(base), "--runas", "0", "-t", "none", "-u", "none", "--map-guest-addr", "169.254.1.2", "-q", "--netns", "/n")},
		{"own -t and -u replace the defaults", Config{NetNS: "/n", Args: []string{"-t", "22", "--udp-ports=53"}}, 0,
			append(slices.Clone(base), "--runas", "0", "-t", "22", "--udp-ports=53", "--netns", "/n")},
		{"own -I replaces IfName", Config{NetNS: "/n", IfName: "eth0", Args: []string{"-Inet1"}}, 0,
			append(slices.Clone(base), "--runas", "0", "-t", "none", "-u", "none", "-Inet1", "--netns", "/n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildArgs(tt.cfg, inst, tt.euid)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("buildArgs:\n got %q\nwant %q", got, tt.want)
			}
			if !cmdlineHasSocket(got, inst.Socket) {
				t.Fatalf("the arguments built do not match the socket: %q", got)
			}
			if ns, ok := cmdlineOption(got, "--netns"); !ok || ns != tt.cfg.NetNS {
				t.Fatalf("--netns in built args = %q, %v", ns, ok)
			}
		})
	}
}

func TestCheckArgs(t *testing.T) {
	ok := [][]string{
		nil,
		{"--map-guest-addr", "169.254.1.2"},
		{"-t", "22", "-T", "none", "-d", "--dns", "192.0.2.53"},
		{"--config-network"}, // not ours: an unknown option, pasta judges it
	}
	for _, a := range ok {
		if err := checkArgs(a); err != nil {
			t.Errorf("checkArgs(%q): %v", a, err)
		}
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"-c", "/x"}, `pastaArgs[0] "-c": option --conf-path`},
		{[]string{"-q", "--conf-path=/x"}, `pastaArgs[1] "--conf-path=/x"`},
		{[]string{"-P/x"}, "--pid"},
		{[]string{"--netns", "/n"}, "--netns"},
		{[]string{"--runas", "1000"}, "--runas"},
		{[]string{"-f"}, "--foreground"},
		{[]string{"-l", "/tmp/log"}, "--log-file"},
		{[]string{"--config-net"}, "--config-net"},
		{[]string{"--userns", "/proc/1/ns/user"}, "--userns"},
		{[]string{"-F", "3"}, "--fd"},
	}
	for _, b := range bad {
		err := checkArgs(b.args)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("checkArgs(%q) = %v, want an error containing %q", b.args, err, b.want)
		}
	}
}

func TestHasOption(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"-t", "22"}, true},
		{[]string{"-t22"}, true},
		{[]string{"--tcp-ports", "22"}, true},
		{[]string{"--tcp-ports=22"}, true},
		{[]string{"-T", "22"}, false},
		{[]string{"--tcp-ns", "22"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := hasOption(tt.args, "-t", "--tcp-ports"); got != tt.want {
			t.Errorf("hasOption(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	a := dir + "/a"
	os.WriteFile(a, nil, 0o600)
	os.Symlink(a, dir+"/link")
	os.WriteFile(dir+"/b", nil, 0o600)
	if !sameFile(a, dir+"/link") || !sameFile(a, dir+"/./a") || !sameFile("/x/none", "/x/none") {
		t.Error("same file not recognized")
	}
	if sameFile(a, dir+"/b") || sameFile(a, dir+"/none") {
		t.Error("different files taken as the same")
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
		{Config{IfName: "eth0", Args: []string{"--map-guest-addr", "-I"}}, "eth0"}, // no value: pasta refuses it
	}
	for _, tt := range tests {
		if got := nsIfName(tt.cfg); got != tt.want {
			t.Errorf("nsIfName(%+v) = %q, want %q", tt.cfg, got, tt.want)
		}
	}
}
