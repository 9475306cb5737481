package attach

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestExplainHolders: a socket fail names the process holding each port
// that did not listen; other errors pass unchanged.
func TestExplainHolders(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: holders are found through /proc/PID/fd")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	rule := wire.NewRule(wire.ProtoTCP, netip.Addr{}, port, port, 80, 0)
	failed := &ctlclient.StatusError{Path: "/run/x.sock", Result: &ctlclient.Result{Status: ctlclient.StatusSocketFail,
		Failed: []ctlclient.RuleFailure{{PifRule: ctlclient.PifRule{Pif: wire.PifHost, Rule: rule}, Ports: []uint16{port}}}}}
	comm, _ := os.ReadFile("/proc/self/comm")

	got := explainHolders(failed)
	e := Describe(got, nil)
	if e.Kind != KindSocketFail {
		t.Fatalf("kind %v, want %v", e.Kind, KindSocketFail)
	}
	want := "is held by " + strings.TrimSpace(string(comm)) + " (pid "
	if !strings.Contains(e.Details, want) || strings.Contains(e.Details, "enable_port_reservation") {
		t.Errorf("details %q: want %q and no Podman setting (the holder is not conmon)", e.Details, want)
	}
	if !errors.Is(got, failed) {
		t.Error("the explained error does not wrap the original")
	}

	for _, err := range []error{nil, errors.New("other"), &ctlclient.StatusError{Path: "p"}} {
		if got := explainHolders(err); got != err {
			t.Errorf("explainHolders(%v) = %v, want it unchanged", err, got)
		}
	}
}
