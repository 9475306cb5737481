package forwarder

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forkingFake writes a "pasta" shell script that forks three children
// before it goes on: two that stay in its process group (one with a
// cleared environment), and one that leaves with setsid. Their PIDs go to
// the returned file. then is the script's last line: exit 1, or exec of
// the fake pasta (the test binary).
func forkingFake(t *testing.T, then string) (script, children string) {
	t.Helper()
	dir := t.TempDir()
	children = filepath.Join(dir, "children")
	script = filepath.Join(dir, "pasta")
	body := fmt.Sprintf(`#!/bin/sh
sleep 300 & echo $! >> %[1]s
env -i sleep 300 & echo $! >> %[1]s
setsid sleep 300 & echo $! >> %[1]s
%[2]s
`, children, then)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, children
}

func childPIDs(t *testing.T, file string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the fake wrote no children: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if len(pids) != 3 {
		t.Fatalf("children %v, want 3", pids)
	}
	return pids
}

// assertNothingLeft: the children that stayed in the start's process
// group are gone and no process names the attachment's socket, within a
// few seconds (init reaps them). The one that left with setsid is not
// tracked (see the package comment; it may have been killed with the
// group before it left): it is killed here.
func assertNothingLeft(t *testing.T, children []int, socket string) {
	t.Helper()
	for _, pid := range children[:2] {
		waitFor(t, fmt.Sprintf("child %d of the fake pasta to be gone", pid), func() bool { return gone(pid) })
	}
	_ = syscall.Kill(children[2], syscall.SIGKILL)
	waitFor(t, "no process naming "+socket, func() bool {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.Contains(string(b), socket) {
				return false
			}
		}
		return true
	})
}

// TestForkingPastaLeavesNothing: what a "pasta" forks into its process
// group is stopped with it, after a failed start and after a start that
// succeeded, and so is a daemon that never answers; a child that left the
// group with setsid is not (it cannot be told from any other process).
func TestForkingPastaLeavesNothing(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fake := fmt.Sprintf(`exec %q "$@"`, self)
	tests := []struct {
		name, then, mode string
		wantErr          string // "" : starts, then Stop
	}{
		{"fails at once", "echo 'fake: cannot start' >&2; exit 1", "", "exit status 1"},
		{"daemon exits later", fake, "die", "exited after starting"},
		{"daemon never answers", fake, "silent", "did not answer"},
		{"killed by a signal", "kill -9 $$", "", "killed by signal 9"},
		{"starts, then Stop", fake, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fakeConfig(t, tt.mode)
			cfg.Timeout = 2 * time.Second
			var children string
			cfg.Pasta, children = forkingFake(t, tt.then)
			inst, err := Ensure(t.Context(), cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Ensure = %+v, %v; want an error saying %q", inst, err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("Ensure: %v", err)
				}
				if err := Stop(t.Context(), cfg.Dir); err != nil {
					t.Fatalf("Stop: %v", err)
				}
			}
			p := Paths(cfg.Dir)
			assertNothingLeft(t, childPIDs(t, children), p.Socket)
			for _, f := range []string{p.Socket, p.PIDFile, p.IdentFile} {
				if _, err := os.Stat(f); !os.IsNotExist(err) {
					t.Errorf("%s left: %v", f, err)
				}
			}
		})
	}
}

// TestStartDeadlineKillsGroup: a "pasta" that never returns is killed
// with its children when the deadline passes.
func TestStartDeadlineKillsGroup(t *testing.T) {
	cfg := fakeConfig(t, "")
	cfg.Timeout = 500 * time.Millisecond
	var children string
	cfg.Pasta, children = forkingFake(t, "sleep 300")
	_, err := Ensure(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "did not finish starting") {
		t.Fatalf("Ensure = %v, want a deadline error", err)
	}
	assertNothingLeft(t, childPIDs(t, children), Paths(cfg.Dir).Socket)
}

func TestStatPGID(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"12 (pasta) S 1 12 12 0 -1", 12, true},
		{"13 (a) b) (c) S 1 77 77 0", 77, true},
		{"14 (sh) S 1", 0, false},
		{"15 sh S 1 2 3", 0, false},
		{"16 (x) S 1 -1 0", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		if got, ok := statPGID([]byte(tt.in)); got != tt.want || ok != tt.ok {
			t.Errorf("statPGID(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestStartRetriesBusyTap: a pasta that finds the namespace's tap device
// still busy (the previous forwarder was just killed) is started again
// within the deadline; any other failure is not retried.
func TestStartRetriesBusyTap(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		msg   string
		tries int // starts Ensure makes
	}{
		{"TUNSETIFF ioctl on /dev/net/tun failed: Device or resource busy", 3},
		{"Couldn't open network namespace", 1},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			cfg := fakeConfig(t, "")
			count := filepath.Join(t.TempDir(), "count")
			// Fails twice with msg, then runs the fake pasta.
			script := filepath.Join(t.TempDir(), "pasta")
			body := fmt.Sprintf(`#!/bin/sh
echo x >> %[1]s
if [ "$(wc -l < %[1]s)" -le 2 ]; then echo %[2]q >&2; exit 1; fi
exec %[3]q "$@"
`, count, tc.msg, self)
			if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
			cfg.Pasta = script
			_, err := Ensure(t.Context(), cfg)
			b, _ := os.ReadFile(count)
			if tries := strings.Count(string(b), "x"); tries != tc.tries {
				t.Errorf("pasta started %d times, want %d", tries, tc.tries)
			}
			if (err == nil) != (tc.tries == 3) {
				t.Errorf("Ensure: %v", err)
			}
		})
	}
}
