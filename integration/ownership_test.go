package integration

// What DEL, ADD and GC may touch: only rules a record proves the
// attachment owns, with the real pasta and pesto.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// rename gives the network another name (another network on the same
// forwarder and data directory).
func (n *network) rename(t *testing.T, name string) {
	t.Helper()
	var conf map[string]any
	if err := json.Unmarshal(n.list.Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	conf["name"] = name
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	if n.list, err = libcni.NetworkConfFromBytes(b); err != nil {
		t.Fatalf("conflist %s: %v", b, err)
	}
}

// TestDelWithoutRecordRemovesNothing: the DEL a runtime sends for an
// attachment whose ADD never ran carries mappings that match a rule pesto
// added (byte for byte the rule the mapping makes) and a rule of another
// network's attachment on the same forwarder. The attachment has no
// record, so it sent nothing: DEL succeeds and both rules stay, byte for
// byte, and keep forwarding.
func TestDelWithoutRecordRemovesNothing(t *testing.T) {
	f := pastatest.Start(t)
	pastatest.ServeTCP(t, f.NS, ":80", "pesto's")
	pastatest.ServeTCP(t, f.NS, ":81", "other network's")
	ports := pastatest.FreePorts(t, "tcp", 2)
	pestoPort, otherPort := ports[0], ports[1]
	f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:80", pestoPort))

	dataDir := t.TempDir()
	n := newNetwork(t, f, map[string]any{"dataDir": dataDir})
	other := newNetwork(t, f, map[string]any{"dataDir": dataDir})
	other.rename(t, "pt-other-network")
	otherMap := mapping{HostPort: otherPort, ContainerPort: 81, Protocol: "tcp", HostIP: "127.0.0.1"}
	other.mustAdd(t, "ctr-b", otherMap)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", pestoPort), "pesto's")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", otherPort), "other network's")
	pesto, raw := f.Tables(t), f.ReadTables(t)

	n.mustDel(t, "ctr-a",
		mapping{HostPort: pestoPort, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
		otherMap)
	sameTables(t, "after DEL of an attachment without a record", f, pesto, raw)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", pestoPort), "pesto's")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", otherPort), "other network's")
	if err := other.check(t, "ctr-b", otherMap); err != nil {
		t.Fatalf("CHECK of the other network's attachment: %v", err)
	}

	// The other network's own DEL still removes its rule, and only it.
	other.mustDel(t, "ctr-b")
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", otherPort), "other network's")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", pestoPort), "pesto's")
	if got := len(hostRules(t, f)); got != 1 {
		t.Fatalf("HOST holds %d rules, want pesto's alone", got)
	}
}

// recordPath is the record file of attachment id of network n.
func (n *network) recordPath(id string) string {
	return store.New(filepath.Join(n.dataDir, "records")).RecordPath(store.Key{Network: n.list.Name, ContainerID: id, IfName: "eth0"})
}

// TestTruncatedRecord: a record file truncated between ADD and the next
// ADD or DEL never leaves the attachment's rule without an owner: the next
// ADD keeps owning the live rule (its backup copy says so) and the port
// keeps answering; a DEL after another truncation, or after the record file
// was removed, removes the rule and the tables are as before the first
// ADD. With the backup copy damaged too,
// ADD and DEL fail with 5 and the rule stays, forwarding.
func TestTruncatedRecord(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	port := pastatest.FreePort(t, "tcp")
	m := mapping{HostPort: port, ContainerPort: 80, Protocol: "tcp"}
	addr := pastatest.HostPort("127.0.0.1", port)
	pesto, raw := f.Tables(t), f.ReadTables(t)

	n.mustAdd(t, "ctr", m)
	if err := os.Truncate(n.recordPath("ctr"), 0); err != nil {
		t.Fatal(err)
	}
	n.mustAdd(t, "ctr", m)
	pastatest.MustAnswer(t, "tcp", addr, "web")
	if err := n.check(t, "ctr", m); err != nil {
		t.Fatalf("CHECK after the repairing ADD: %v", err)
	}
	if err := os.Truncate(n.recordPath("ctr"), 3); err != nil {
		t.Fatal(err)
	}
	n.mustDel(t, "ctr", m)
	pastatest.MustNotAnswer(t, "tcp", addr, "web")
	sameTables(t, "after DEL with a truncated record", f, pesto, raw)

	// The record file removed, its backup copy left: still owned.
	n.mustAdd(t, "ctr", m)
	if err := os.Remove(n.recordPath("ctr")); err != nil {
		t.Fatal(err)
	}
	n.mustDel(t, "ctr")
	pastatest.MustNotAnswer(t, "tcp", addr, "web")
	sameTables(t, "after DEL with the record file removed", f, pesto, raw)

	n.mustAdd(t, "ctr", m)
	live := f.ReadTables(t)
	for _, p := range []string{n.recordPath("ctr"), n.recordPath("ctr") + ".bak"} {
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
	}
	te := wantCode(t, "ADD with record and backup truncated", n.add(t, "ctr", m), 5)
	if !strings.Contains(te.Details, n.recordPath("ctr")) {
		t.Errorf("the error does not name the record: %v", te)
	}
	wantCode(t, "DEL with record and backup truncated", n.del(t, "ctr", m), 5)
	if a, b := ruleKeys(live), ruleKeys(f.ReadTables(t)); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("a refused call changed the tables:\n%s\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	pastatest.MustAnswer(t, "tcp", addr, "web")
}

// TestManagedDelWithoutRecord: the managed pasta of an attachment whose
// record and backup copy were both removed (by hand, following the advice
// of a code 5) is still this attachment's: its directory under dataDir is
// named by the attachment's key, and DEL stops it and removes the
// directory, leaving no process.
func TestManagedDelWithoutRecord(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	n := pastatest.NewNetNS(t)
	port := pastatest.FreePort(t, "tcp")
	m := newManagedCNI(t, n, pasta, port)
	m.add(t)
	pastatest.ServeTCP(t, n, ":80", "web")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "web")
	dir := m.forwarderDir(t)
	pid, running, err := forwarder.Running(dir)
	if err != nil || !running {
		t.Fatalf("managed forwarder in %s: running %v, %v", dir, running, err)
	}
	recs, err := filepath.Glob(filepath.Join(m.dataDir, "records", "*", "*.json*"))
	if err != nil || len(recs) != 2 {
		t.Fatalf("record files: %v %v, want the record and its backup copy", recs, err)
	}
	for _, r := range recs {
		if err := os.Remove(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := m.ctx()
	defer cancel()
	if err := m.cni.DelNetworkList(ctx, m.list, m.rt); err != nil {
		t.Fatalf("DEL without a record: %v", err)
	}
	waitGone(t, pid)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("forwarder directory after DEL: %v", err)
	}
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "web")
}
