package podman

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRootlessArg(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    bool
	}{
		// As Podman 5.8 runs it (common's getCommonNetavarkOptions).
		{"netavark --config /run/user/1000/containers/networks --rootless=true --aardvark-binary=/usr/lib/podman/aardvark-dns --plugin-directory /usr/libexec/netavark setup /run/user/1000/netns/netns-1", true},
		{"netavark --config /run/containers/networks --rootless=false --aardvark-binary=/usr/lib/podman/aardvark-dns setup /run/netns/netns-1", false},
		{"netavark --rootless true setup /ns", true},
		{"netavark --rootless false setup /ns", false},
		{"netavark --rootless", false},
		{"netavark --rootless=maybe setup /ns", false},
		{"netavark setup /ns", false},
		{"netavark -- --rootless=true", false},
		{"", false},
	} {
		b := []byte(strings.ReplaceAll(tc.cmdline, " ", "\x00") + "\x00")
		if got := RootlessArg(b); got != tc.want {
			t.Errorf("RootlessArg(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}

func TestRootlessNetavark(t *testing.T) {
	proc := fakeProc(t, map[int][2]string{
		100: {"passt-portmap", "90"}, 90: {"netavark", "80"}, 80: {"podman", "1"},
		200: {"passt-portmap", "190"}, 190: {"netavark", "80"},
		300: {"passt-portmap", "290"}, 290: {"sh", "90"}, // a wrapper script that does not exec
	})
	write(t, filepath.Join(proc, "90", "cmdline"), "netavark\x00--config\x00/r\x00--rootless=true\x00setup\x00/ns\x00")
	write(t, filepath.Join(proc, "190", "cmdline"), "netavark\x00--config\x00/r\x00--rootless=false\x00setup\x00/ns\x00")
	write(t, filepath.Join(proc, "290", "cmdline"), "sh\x00--rootless=true\x00")
	for pid, want := range map[int]bool{100: true, 200: false, 300: false, 400: false} {
		if got := RootlessNetavark(proc, pid); got != want {
			t.Errorf("RootlessNetavark(%d) = %v, want %v", pid, got, want)
		}
	}
}

// TestCheckReservation: under a rootful Podman whose reservation is on,
// the error names the Podman, where the setting came from and the fix;
// off, or not under Podman, nothing.
func TestCheckReservation(t *testing.T) {
	proc := fakeProc(t, map[int][2]string{100: {"passt-portmap", "90"}, 90: {"netavark", "80"}, 80: {"podman", "1"}, 200: {"passt-portmap", "1"}})
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(proc, "self", "uid_map"), "         0          0 4294967295\n")
	root := t.TempDir()
	conf := filepath.Join(root, "etc/containers/containers.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	err := CheckReservation(proc, 100, root, env)
	re, ok := err.(*ReservationError)
	if !ok || re.Podman.PID != 80 || !strings.Contains(err.Error(), "Podman's default") || !strings.Contains(err.Error(), DropIn) {
		t.Fatalf("default reservation: %v", err)
	}
	if err := CheckReservation(proc, 200, root, env); err != nil {
		t.Errorf("not under Podman: %v", err)
	}
	write(t, conf, "[engine]\nenable_port_reservation = false\n")
	if err := CheckReservation(proc, 100, root, env); err != nil {
		t.Errorf("reservation off: %v", err)
	}
	write(t, filepath.Join(proc, "self", "uid_map"), "         0       1000          1\n")
	write(t, conf, "[engine]\nenable_port_reservation = true\n")
	if err := CheckReservation(proc, 100, root, env); err != nil {
		t.Errorf("rootless: %v", err)
	}
}
