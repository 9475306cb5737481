package cli

import (
	"io"
	"testing"
)

func TestCommand(t *testing.T) {
	if got := Run([]string{"--version"}, io.Discard, io.Discard, []string{"v"}); got != 0 {
		t.Errorf("--version exit status %d", got)
	}
	if got := Run([]string{"bogus"}, io.Discard, io.Discard, nil); got != 2 {
		t.Errorf("usage exit status %d", got)
	}
	if got := Run([]string{"show", "/nonexistent/pp.sock"}, io.Discard, io.Discard, nil); got != 1 {
		t.Errorf("show of a missing socket: exit status %d", got)
	}
}
