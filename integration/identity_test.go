package integration

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// plugRunOn is newPlugRun on a given forwarder; without pidFile, the
// configuration names no PID file.
func plugRunOn(t *testing.T, f *pastatest.Forwarder) *plugRun {
	t.Helper()
	dataDir, err := os.MkdirTemp("", "pp-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	return &plugRun{t: t, bin: pluginBinary(t), f: f, dataDir: dataDir}
}

// confNoPID is conf without "pidFile": the plugin finds the forwarder's
// process by its socket alone.
func (r *plugRun) confNoPID(ports ...[2]uint16) []byte {
	return []byte(strings.Replace(string(r.conf("", ports...)), fmt.Sprintf(`"pidFile":%q,`, r.f.PIDFile), "", 1))
}

// hasHost reports whether the forwarder's HOST table holds rule.
func hasHost(t *testing.T, f *pastatest.Forwarder, rule wire.Rule) bool {
	t.Helper()
	return f.ReadTables(t).Lookup(wire.PifHost).Contains(rule)
}

// dualTCP is the rule the plugin makes of a TCP mapping on every address.
func dualTCP(port, to uint16) wire.Rule {
	return wire.NewRule(wire.ProtoTCP, netip.Addr{}, port, port, to, wire.FlagDualStack)
}

// checkRestarted runs CHECK of cid and wants it to fail (104) saying
// that the forwarder is not the one its rules were added to.
func (r *plugRun) checkRestarted(cid string, conf []byte) {
	r.t.Helper()
	_, e := r.exec("CHECK", cid, conf)
	if e == nil || e.Code != 104 || !strings.Contains(e.Details, "restarted") {
		r.t.Errorf("CHECK %s after the forwarder changed: %+v, want 104 saying it was restarted", cid, e)
	}
}

// pestoRuleKept: pesto adds to f the rule that cid's mapping (port to
// 80) made. f, named by which, is not the forwarder cid's rules went to:
// CHECK of cid must say it was restarted, and DEL of cid must leave
// pesto's rule.
func (r *plugRun) pestoRuleKept(f *pastatest.Forwarder, which, cid string, conf []byte, port uint16) {
	t := r.t
	t.Helper()
	f.Pesto(t, "-A", "-t", fmt.Sprintf("%d:80", port))
	rule := dualTCP(port, 80)
	if !hasHost(t, f, rule) {
		t.Fatalf("pesto's rule %s is not in %s: %s", rule, which, f.Tables(t))
	}
	r.checkRestarted(cid, conf)
	r.must("DEL", cid, conf)
	if !hasHost(t, f, rule) {
		t.Fatalf("DEL removed pesto's rule %s from %s: %s", rule, which, f.Tables(t))
	}
}

// TestForwarderInOtherNetns: a forwarder started elsewhere that runs in
// another network namespace than the plugin (its control socket is a file
// both see, its listeners are in its own namespace): ADD finds its
// listening sockets where it is, with a PID file and without one, CHECK
// too, and bytes flow.
func TestForwarderInOtherNetns(t *testing.T) {
	where, ctr := pastatest.NewNetNS(t), pastatest.NewNetNS(t)
	f := pastatest.Start(t, pastatest.WithNetNS(ctr), pastatest.InNetNS(where))
	pastatest.ServeTCP(t, ctr, ":80", "far")
	r := plugRunOn(t, f)
	ports := pastatest.FreePorts(t, "tcp", 2)

	r.must("ADD", "pp-o1", r.conf("", [2]uint16{ports[0], 80}))
	r.must("ADD", "pp-o2", r.confNoPID([2]uint16{ports[1], 80}))
	r.must("CHECK", "pp-o1", r.conf("", [2]uint16{ports[0], 80}))
	r.must("CHECK", "pp-o2", r.confNoPID([2]uint16{ports[1], 80}))
	for _, p := range ports {
		got, err := askFromNetns(where, pastatest.HostPort("127.0.0.1", p))
		if err != nil || got != "far" {
			t.Fatalf("from the forwarder's namespace to 127.0.0.1:%d: %q, %v", p, got, err)
		}
	}
	r.must("DEL", "pp-o1", r.conf("", [2]uint16{ports[0], 80}))
	r.must("DEL", "pp-o2", r.confNoPID([2]uint16{ports[1], 80}))
	if got := r.host(); got != "" {
		t.Fatalf("after DEL: %s", got)
	}
}

// TestForwarderInOtherNetnsRestarted: after such a forwarder restarted
// in its namespace at the same path, DEL removes nothing from the new one
// (pesto's byte-equal rule stays): the forwarder the rules went to is
// told apart across namespaces, and one that cannot be told is never
// taken for the same. (Listeners are not verified here: that is the test
// above.)
func TestForwarderInOtherNetnsRestarted(t *testing.T) {
	where, ctr := pastatest.NewNetNS(t), pastatest.NewNetNS(t)
	f := pastatest.Start(t, pastatest.WithNetNS(ctr), pastatest.InNetNS(where))
	r := plugRunOn(t, f)
	port := pastatest.FreePort(t, "tcp")
	conf := r.conf(`"verify":false`, [2]uint16{port, 80})
	r.must("ADD", "pp-o1", conf)

	f.Restart(t)
	r.pestoRuleKept(f, "the restarted forwarder", "pp-o1", conf, port)
}

// TestSocketReboundWhileOldRuns: the control socket file was removed and
// another forwarder bound the same path while the first still runs (both
// listen at the path in the plugin's /proc/net/unix). DEL removes nothing
// from the new one: pesto's byte-equal rule stays, and stderr says why.
func TestSocketReboundWhileOldRuns(t *testing.T) {
	first := pastatest.Start(t)
	pastatest.ServeTCP(t, first.NS, ":80", "first")
	r := plugRunOn(t, first)
	port := pastatest.FreePort(t, "tcp")
	conf := r.conf("", [2]uint16{port, 80})
	r.must("ADD", "pp-r1", conf)

	if err := os.Remove(first.Socket); err != nil {
		t.Fatal(err)
	}
	second := pastatest.Start(t, pastatest.WithSocket(first.Socket))
	r.pestoRuleKept(second, "the forwarder bound at the same path", "pp-r1", conf, port)
}
