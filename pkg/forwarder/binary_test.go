package forwarder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pasta")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckBinary(t *testing.T) {
	tests := []struct {
		name, pasta, want string
	}{
		{"new enough", script(t, `echo "  -c, --conf-path PATH	Configuration socket path"`), ""},
		{"too old", script(t, `echo "  -t, --tcp-ports SPEC	TCP port forwarding to namespace"`), "too old"},
		{"fails", script(t, `echo "cannot run" >&2; exit 2`), "cannot run"},
		{"missing path", "/nonexistent/pasta", "/nonexistent/pasta"},
		{"missing in PATH", "pp-no-such-pasta-binary", "pp-no-such-pasta-binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckBinary(t.Context(), tt.pasta)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckBinary: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckBinary = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
