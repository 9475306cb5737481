package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if got := Run([]string{"--version"}, &out, &errOut, []string{"passt-portmap 0.1.0"}); got != 0 || !strings.HasPrefix(out.String(), "passt-portmap 0.1.0\n") || errOut.Len() != 0 {
		t.Errorf("--version: exit status %d, stdout %q, stderr %q", got, out.String(), errOut.String())
	}
	for _, arg := range []string{"--help", "-h", "help"} {
		out.Reset()
		errOut.Reset()
		if got := Run([]string{arg}, &out, &errOut, nil); got != 0 || !strings.HasPrefix(out.String(), Usage) || !strings.Contains(out.String(), "show SOCKET") || errOut.Len() != 0 {
			t.Errorf("%s: exit status %d, stdout %q, stderr %q", arg, got, out.String(), errOut.String())
		}
	}
	out.Reset()
	if got := Run([]string{"bogus"}, &out, &errOut, nil); got != 2 || out.Len() != 0 || !strings.HasPrefix(errOut.String(), Usage) {
		t.Errorf("usage exit status %d, stdout %q", got, out.String())
	}
	if got := Run([]string{"show", "/nonexistent/pp.sock"}, io.Discard, io.Discard, nil); got != 1 {
		t.Errorf("show of a missing socket: exit status %d", got)
	}
}
