package integration

import (
	"fmt"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// TestPluginRestartedPastaRulesNotOurs: pasta restarted since an ADD lost
// the attachment's rule; the same rule that pesto then adds to the new
// pasta is pesto's: DEL leaves it (and it keeps forwarding), ADD does not
// adopt it.
func TestPluginRestartedPastaRulesNotOurs(t *testing.T) {
	r := newPlugRun(t)
	p := pastatest.FreePort(t, "tcp")
	conf := r.conf("", [2]uint16{p, 80})
	r.must("ADD", "pp-r1", conf)
	r.f.Restart(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", "r80")
	r.f.Pesto(t, "-A", "-t", fmt.Sprintf("%d:80", p))
	want := r.host()
	r.mustFail("ADD", "pp-r1", conf, 100, "does not own it")
	r.must("DEL", "pp-r1", conf)
	if got := r.host(); got != want {
		t.Fatalf("after DEL: %s, want pesto's rule kept: %s", got, want)
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p), "r80")
}
