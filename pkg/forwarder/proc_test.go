package forwarder

import (
	"os"
	"path/filepath"
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
	dir := fakeDir(t)
	d, err := openDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := filepath.Join(dir, PIDFileName)
	if pid, err := readPIDFile(d); pid != 0 || err != nil {
		t.Errorf("missing file: %d, %v; want 0, nil", pid, err)
	}
	os.WriteFile(p, nil, 0o600)
	if pid, err := readPIDFile(d); pid != 0 || err != nil {
		t.Errorf("empty file (start under way): %d, %v; want 0, nil", pid, err)
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, err := readPIDFile(d); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("malformed file: %v, want an error naming %s", err, p)
	}
	os.WriteFile(p, []byte("42\n"), 0o600)
	if pid, err := readPIDFile(d); pid != 42 || err != nil {
		t.Errorf("42: %d, %v", pid, err)
	}
}

// TestRunningNotOurs: a PID file naming a live process of ours that does
// not hold the attachment's control socket (here: the test itself), with
// no identity record, is not the forwarder: Running says so, and Stop
// neither signals it nor fails.
func TestRunningNotOurs(t *testing.T) {
	dir := fakeDir(t)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
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

// TestRunningIdentity: the identity record names the forwarder only
// while it is the same process: a record whose start time is not the
// process's (the PID reused), or whose process is gone, names none, and
// Stop signals nothing.
func TestRunningIdentity(t *testing.T) {
	dir := fakeDir(t)
	d, err := openDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	self := proc{PID: os.Getpid(), Start: processStart(os.Getpid())}
	for _, tc := range []struct {
		name string
		p    proc
		want bool
	}{
		{"same process", self, true},
		{"PID reused", proc{PID: self.PID, Start: self.Start + 1}, false},
		{"gone", proc{PID: 4194305, Start: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := writeIdent(d, &identity{Proc: tc.p, UID: uint32(os.Geteuid())}); err != nil {
				t.Fatal(err)
			}
			pid, ok, err := Running(dir)
			if ok != tc.want || err != nil || (ok && pid != tc.p.PID) {
				t.Fatalf("Running = %d, %v, %v; want %v", pid, ok, err, tc.want)
			}
		})
	}
	// A damaged record counts as lost.
	os.WriteFile(filepath.Join(dir, IdentFileName), []byte("{"), 0o600)
	if _, ok, err := Running(dir); ok || err != nil {
		t.Fatalf("damaged record: %v, %v", ok, err)
	}
}

func TestStopMissingDir(t *testing.T) {
	if err := Stop(t.Context(), fakeDir(t)); err != nil {
		t.Fatalf("Stop of a missing directory: %v", err)
	}
}

func TestTailLines(t *testing.T) {
	dir := fakeDir(t)
	d, err := openDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	os.WriteFile(filepath.Join(dir, "log"), []byte("a\n\nb\n  c  \nd\n"), 0o600)
	if got := tailLines(d, "log", 2, 4096); got != "c | d" {
		t.Errorf("tailLines = %q", got)
	}
	if got := tailLines(d, "log", 10, 3); got != "d" { // the last 3 bytes are "\nd\n"
		t.Errorf("tailLines with a byte limit = %q, want %q", got, "d")
	}
	if got := tailLines(d, "none", 2, 4096); got != "" {
		t.Errorf("missing file: %q", got)
	}
}
