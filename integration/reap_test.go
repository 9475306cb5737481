package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// TestReapOrphanedForwarder: a runtime removes a container's namespace
// without calling DEL (containerd does when an earlier network's DEL
// fails, or after its configuration changed). The next ADD on the network
// stops that container's managed pasta and removes its directory and
// record; a container whose namespace still exists is left alone.
func TestReapOrphanedForwarder(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	dataDir := pastatest.TempDir(t, "reap-data-")

	// The namespace the runtime will remove, made here rather than by
	// pastatest, whose cleanup would fail on a removed namespace.
	name := fmt.Sprintf("reap-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	removed := false
	removeNS := func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
		removed = true
	}
	t.Cleanup(func() {
		if !removed {
			removeNS()
		}
	})
	lost := &pastatest.NetNS{Name: name, Path: "/run/netns/" + name}
	kept := pastatest.NewNetNS(t)
	next := pastatest.NewNetNS(t)
	ports := pastatest.FreePorts(t, "tcp", 3)
	a := newManagedCNIIn(t, dataDir, lost, pasta, ports[0])
	b := newManagedCNIIn(t, dataDir, kept, pasta, ports[1])
	c := newManagedCNIIn(t, dataDir, next, pasta, ports[2])
	a.add(t)
	b.add(t)
	st := store.New(filepath.Join(dataDir, "records"))
	recA, err := st.Get(store.Key{Network: a.list.Name, ContainerID: a.rt.ContainerID, IfName: "eth0"})
	if err != nil || recA == nil || !recA.Managed {
		t.Fatalf("record of the first container: %+v, %v", recA, err)
	}
	pidA, ok, err := forwarder.Running(recA.Dir)
	if err != nil || !ok {
		t.Fatalf("forwarder of the first container: running %v, %v", ok, err)
	}
	pastatest.ServeTCP(t, lost, ":80", "lost")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ports[0]), "lost")

	// The runtime removes the namespace. pasta notices (it watches the
	// namespace's directory) and exits; its directory and the record stay.
	removeNS()
	waitGone(t, pidA)
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ports[0]), "lost")
	if _, err := os.Stat(recA.Dir); err != nil {
		t.Fatalf("forwarder directory %s before the next ADD: %v", recA.Dir, err)
	}

	c.add(t)
	if _, err := os.Stat(recA.Dir); !os.IsNotExist(err) {
		t.Errorf("forwarder directory %s after the reaping ADD: %v", recA.Dir, err)
	}
	if _, err := os.Stat(st.RecordPath(recA.Key())); !os.IsNotExist(err) {
		t.Errorf("record of the removed container after the reaping ADD: %v", err)
	}
	// The others keep their forwarders and records.
	for _, m := range []*managedCNI{b, c} {
		rec, err := st.Get(store.Key{Network: m.list.Name, ContainerID: m.rt.ContainerID, IfName: "eth0"})
		if err != nil || rec == nil {
			t.Fatalf("record of %s: %+v, %v", m.rt.ContainerID, rec, err)
		}
		if _, ok, err := forwarder.Running(rec.Dir); !ok || err != nil {
			t.Errorf("forwarder of %s: running %v, %v", m.rt.ContainerID, ok, err)
		}
	}
	pastatest.ServeTCP(t, kept, ":80", "kept")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ports[1]), "kept")
}
