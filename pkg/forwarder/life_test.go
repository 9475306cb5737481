package forwarder

import (
	"os"
	"testing"
)

func TestStatLife(t *testing.T) {
	tests := []struct {
		name  string
		stat  string
		state byte
		start uint64
		ok    bool
	}{
		{"running", "42 (pasta) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10", 'S', 12345, true},
		{"zombie with odd name", "7 (a) b (c)) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", 'Z', 99, true},
		{"short", "7 (x) S 1 7", 0, 0, false},
		{"no name", "7 x S", 0, 0, false},
		{"bad start", "42 (p) S 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0 0", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, start, ok := statLife([]byte(tt.stat))
			if state != tt.state || start != tt.start || ok != tt.ok {
				t.Errorf("statLife = %q, %d, %v; want %q, %d, %v", state, start, ok, tt.state, tt.start, tt.ok)
			}
		})
	}
}

func TestExitedSelf(t *testing.T) {
	pid := os.Getpid()
	start := processStart(pid)
	if start == 0 {
		t.Fatalf("no start time for the test process %d", pid)
	}
	if exited(pid, start) {
		t.Errorf("exited(self) = true for a running process")
	}
	if !exited(pid, start+1) {
		t.Errorf("exited(self, other start) = false: a PID taken by a later process must count as exited")
	}
}
