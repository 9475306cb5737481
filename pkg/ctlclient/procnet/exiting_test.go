package procnet

import (
	"os"
	"testing"
)

func TestStatExiting(t *testing.T) {
	tests := []struct {
		stat string
		want bool
	}{
		{"1234 (pasta) S 1 1234 1234 0 -1 4194560 100 0 0 0", false},
		{"1234 (pasta) S 1 1234 1234 0 -1 4194564 100 0 0 0", true},  // PF_EXITING
		{"1234 (ld-linux) (x) D 1 1 1 0 -1 4194372 1 2 3 4", true},   // parentheses in the name
		{"1234 (pasta) Z 1 1234 1234 0 -1 4194564 100 0 0 0", false}, // a zombie has closed its files
		{"1234 (pasta) X 1 1234 1234 0 -1 4194564 100 0 0 0", false}, // dead
		{"1234 (pasta) S 1 1234", false},                             // short
		{"1234 pasta S 1 1234 1234 0 -1 4194564 100 0 0 0", false},   // no name
		{"1234 (pasta) S 1 1234 1234 0 -1 garbage 100 0 0 0", false}, // bad flags
		{"", false},
	}
	for _, tt := range tests {
		if got := StatExiting([]byte(tt.stat)); got != tt.want {
			t.Errorf("StatExiting(%q) = %v, want %v", tt.stat, got, tt.want)
		}
	}
	if Exiting(os.Getpid()) {
		t.Error("this running test process reads as exiting")
	}
}
