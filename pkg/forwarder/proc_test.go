package forwarder

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParsePID(t *testing.T) {
	good := map[string]int{"1": 1, "6805\n": 6805, "4194304": 4194304}
	for in, want := range good {
		if got, err := parsePID([]byte(in)); err != nil || got != want {
			t.Errorf("parsePID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "0", "-5", "12 ", " 12", "12\n\n", "0x10", "012", "1e3", "99999999999999999999", "12\x00"} {
		if got, err := parsePID([]byte(in)); err == nil {
			t.Errorf("parsePID(%q) = %d, want an error", in, got)
		}
	}
}

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pid")
	if pid, err := readPIDFile(p); pid != 0 || err != nil {
		t.Errorf("missing file: %d, %v; want 0, nil", pid, err)
	}
	os.WriteFile(p, nil, 0o600)
	if pid, err := readPIDFile(p); pid != 0 || err != nil {
		t.Errorf("empty file (start under way): %d, %v; want 0, nil", pid, err)
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, err := readPIDFile(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("malformed file: %v, want an error naming %s", err, p)
	}
	os.WriteFile(p, []byte("42\n"), 0o600)
	if pid, err := readPIDFile(p); pid != 42 || err != nil {
		t.Errorf("42: %d, %v", pid, err)
	}
}

func TestCmdline(t *testing.T) {
	const sock = "/var/lib/cni/passt-portmap/ab/pasta.sock"
	tests := []struct {
		name string
		raw  string
		want bool
	}{
		{"wrapper through the loader", "/lib/ld-linux-x86-64.so.2\x00--library-path\x00/lib\x00/usr/bin/pasta\x00--config-net\x00-c\x00" + sock + "\x00-P\x00/x.pid\x00--netns\x00/run/netns/a\x00", true},
		{"long option", "pasta\x00--conf-path\x00" + sock + "\x00", true},
		{"long option with =", "pasta\x00--conf-path=" + sock + "\x00", true},
		{"short option glued", "pasta\x00-c" + sock + "\x00", true},
		{"another socket", "pasta\x00-c\x00" + sock + ".old\x00", false},
		{"socket path as another option's value", "pasta\x00-P\x00" + sock + "\x00", false},
		{"-c last, no value", "pasta\x00-c\x00", false},
		{"zombie: empty", "", false},
		{"sh -c then our socket", "/bin/sh\x00-c\x00sleep 1\x00x\x00-c\x00" + sock + "\x00", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cmdlineHasSocket(splitCmdline([]byte(tt.raw)), sock); got != tt.want {
				t.Fatalf("cmdlineHasSocket = %v, want %v (args %q)", got, tt.want, splitCmdline([]byte(tt.raw)))
			}
		})
	}
}

func TestCmdlineOption(t *testing.T) {
	args := []string{"pasta", "--netns", "/run/netns/a", "--netns=/run/netns/b", "--netns"}
	if v, ok := cmdlineOption(args, "--netns"); !ok || v != "/run/netns/b" {
		t.Errorf("got %q, %v; want the last value /run/netns/b", v, ok)
	}
	if v, ok := cmdlineOption([]string{"pasta"}, "--netns"); ok || v != "" {
		t.Errorf("absent: %q, %v", v, ok)
	}
}

func TestSplitCmdline(t *testing.T) {
	if got := splitCmdline([]byte("a\x00\x00b\x00")); !slices.Equal(got, []string{"a", "", "b"}) {
		t.Errorf("got %q", got)
	}
	if got := splitCmdline(nil); got != nil {
		t.Errorf("empty: %q", got)
	}
}

// TestRunningNotOurs: a PID file naming a live process that is not this
// attachment's pasta (here: the test itself) is not running, and Stop
// neither signals it nor fails.
func TestRunningNotOurs(t *testing.T) {
	dir := t.TempDir()
	inst := Paths(dir)
	os.WriteFile(inst.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	os.WriteFile(inst.Socket, nil, 0o600) // stands for a stale socket file
	pid, ok, err := Running(dir)
	if ok || err != nil || pid != 0 {
		t.Fatalf("Running = %d, %v, %v; want 0, false, nil", pid, ok, err)
	}
	if err := Stop(t.Context(), dir); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// Still alive (we are), files gone.
	for _, p := range []string{inst.PIDFile, inst.Socket} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func TestRunningGoneAndMalformed(t *testing.T) {
	dir := t.TempDir()
	if pid, ok, err := Running(dir); ok || err != nil || pid != 0 {
		t.Fatalf("no PID file: %d, %v, %v", pid, ok, err)
	}
	inst := Paths(dir)
	// PID above pid_max: no such process.
	os.WriteFile(inst.PIDFile, []byte("4194305\n"), 0o600)
	if _, ok, err := Running(dir); ok || err != nil {
		t.Fatalf("dead PID: %v, %v", ok, err)
	}
	os.WriteFile(inst.PIDFile, []byte("not a pid"), 0o600)
	if _, _, err := Running(dir); err == nil {
		t.Fatal("malformed PID file: no error")
	}
	// Stop treats it as lost: nothing of ours runs, files removed.
	if err := Stop(t.Context(), dir); err != nil {
		t.Fatalf("Stop with a malformed PID file: %v", err)
	}
	if _, err := os.Stat(inst.PIDFile); !os.IsNotExist(err) {
		t.Errorf("malformed PID file left by Stop: %v", err)
	}
}

func TestStopMissingDir(t *testing.T) {
	if err := Stop(t.Context(), filepath.Join(t.TempDir(), "never")); err != nil {
		t.Fatalf("Stop of a missing directory: %v", err)
	}
}

func TestTailLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	os.WriteFile(p, []byte("a\n\nb\n  c  \nd\n"), 0o600)
	if got := tailLines(p, 2, 4096); got != "c | d" {
		t.Errorf("tailLines = %q", got)
	}
	if got := tailLines(p, 10, 3); got != "d" { // the last 3 bytes are "\nd\n"
		t.Errorf("tailLines with a byte limit = %q, want %q", got, "d")
	}
	if got := tailLines(filepath.Join(t.TempDir(), "none"), 2, 4096); got != "" {
		t.Errorf("missing file: %q", got)
	}
}
