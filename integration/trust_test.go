package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// attachmentDir is the managed forwarder directory the plugin makes for
// an attachment: a hash of its key, predictable by anyone who knows the
// network, the container ID and the interface.
func attachmentDir(dataDir, network, cid, ifname string) string {
	h := sha256.Sum256([]byte(network + "\x00" + cid + "\x00" + ifname))
	return filepath.Join(dataDir, "forwarders", hex.EncodeToString(h[:8]))
}

// impostors starts n processes as uid and gid 65534 (nobody) that ignore
// SIGTERM and look like the forwarder of the attachment whose socket is
// socket to anyone who goes by names: their command line names the
// socket as pasta's control socket and their environment carries the
// variable a managed start once marked its processes with. They are
// killed when the test ends.
func impostors(t *testing.T, n int, socket string) []*exec.Cmd {
	t.Helper()
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("/bin/sh", "-c", `trap "" TERM; while :; do sleep 1; done`, "pasta", "-c", socket, "--conf-path", socket)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "PASST_PORTMAP_FORWARDER=" + socket}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start a process as nobody: %v", err)
		}
		cmds = append(cmds, cmd)
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
		}
	})
	return cmds
}

// alive reports whether cmd's process still runs (not exited, not a
// zombie).
func alive(cmd *exec.Cmd) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// TestOtherUsersProcessesIgnored: processes of another user that name an
// attachment's socket in their command line and carry the plugin's old
// environment marker, and that ignore SIGTERM, neither delay nor fail a
// managed ADD, DEL or GC of that attachment, and are never signalled:
// the plugin goes by the identity of the forwarder it started, not by
// names anyone can forge.
func TestOtherUsersProcessesIgnored(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	dataDir := pastatest.TempDir(t, "pp-nobody-")
	n := pastatest.NewNetNS(t)
	port := pastatest.FreePort(t, "tcp")
	m := newManagedCNIIn(t, dataDir, n, pasta, port)
	sock := forwarder.Paths(attachmentDir(dataDir, m.list.Name, m.rt.ContainerID, m.rt.IfName)).Socket
	procs := impostors(t, 12, sock)
	pastatest.ServeTCP(t, n, ":80", "real")

	timed := func(what string, fn func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := m.ctx()
		defer cancel()
		start := time.Now()
		err := fn(ctx)
		t.Logf("%s with %d processes of nobody naming %s: %v (%v)", what, len(procs), sock, err, time.Since(start))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// Not a speed target: a bound far above an ADD's usual tenth of
		// a second, far below the timeout another user could make it
		// wait for.
		if d := time.Since(start); d > managedTimeout/3 {
			t.Errorf("%s took %v: something made it wait (timeout %v)", what, d, managedTimeout)
		}
	}
	timed("ADD", func(ctx context.Context) error { _, err := m.cni.AddNetworkList(ctx, m.list, m.rt); return err })
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "real")
	timed("CHECK", func(ctx context.Context) error { return m.cni.CheckNetworkList(ctx, m.list, m.rt) })
	timed("DEL", func(ctx context.Context) error { return m.cni.DelNetworkList(ctx, m.list, m.rt) })
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "real")
	timed("ADD again", func(ctx context.Context) error { _, err := m.cni.AddNetworkList(ctx, m.list, m.rt); return err })
	timed("GC", func(ctx context.Context) error {
		return m.cni.GCNetworkList(ctx, m.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}})
	})
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "real")
	if dir := m.forwarderDir(t); dir != "" {
		t.Errorf("GC left the forwarder directory %s", dir)
	}
	for _, p := range procs {
		if !alive(p) {
			t.Errorf("process %d of nobody was killed", p.Process.Pid)
		}
	}
}

// TestRecordNamingAnotherForwarder: a record that names another live
// attachment's forwarder directory (and a namespace that is gone) makes
// no verb stop or remove that forwarder: neither the orphan reaper of the
// next ADD on the network, nor DEL, GC or CHECK of the record's own
// attachment, which refuse it (5) naming the directory.
func TestRecordNamingAnotherForwarder(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	dataDir := pastatest.TempDir(t, "pp-rec-")
	victimNS, nextNS := pastatest.NewNetNS(t), pastatest.NewNetNS(t)
	ports := pastatest.FreePorts(t, "tcp", 2)
	victim := newManagedCNIIn(t, dataDir, victimNS, pasta, ports[0])
	victim.add(t)
	pastatest.ServeTCP(t, victimNS, ":80", "victim")
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ports[0]), "victim")
	st := store.New(filepath.Join(dataDir, "records"))
	vkey := store.Key{Network: victim.list.Name, ContainerID: victim.rt.ContainerID, IfName: "eth0"}
	vrec, err := st.Get(vkey)
	if err != nil {
		t.Fatal(err)
	}

	// A record of an attachment that never was, naming the victim's
	// directory and socket and a namespace that is gone.
	fake := store.Key{Network: vkey.Network, ContainerID: "pp-fake-" + strconv.Itoa(os.Getpid()), IfName: "eth0"}
	l, err := st.Lock(context.Background(), fake)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(&store.Record{Network: fake.Network, ContainerID: fake.ContainerID, IfName: fake.IfName,
		Netns: "/run/netns/pp-gone-" + strconv.Itoa(os.Getpid()), Socket: vrec.Socket, PIDFile: vrec.PIDFile,
		Managed: true, Dir: vrec.Dir}); err != nil {
		t.Fatal(err)
	}
	l.Unlock()

	// ADDs on the network (each runs the reaper), and the fake's own
	// verbs through the plugin binary.
	next := newManagedCNIIn(t, dataDir, nextNS, pasta, ports[1])
	for range 3 {
		next.add(t)
	}
	fakeRT := &libcni.RuntimeConf{ContainerID: fake.ContainerID, NetNS: "/run/netns/pp-gone", IfName: "eth0"}
	for _, verb := range []string{"DEL", "CHECK"} {
		ctx, cancel := victim.ctx()
		var err error
		if verb == "DEL" {
			err = victim.cni.DelNetworkList(ctx, victim.list, fakeRT)
		} else {
			err = victim.cni.CheckNetworkList(ctx, victim.list, fakeRT)
		}
		cancel()
		if te := wantCode(t, verb+" of the record naming another directory", err, 5); !strings.Contains(te.Details, vrec.Dir) {
			t.Errorf("%s: %v does not name %s", verb, te, vrec.Dir)
		}
	}
	ctx, cancel := victim.ctx()
	err = victim.cni.GCNetworkList(ctx, victim.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
		{ContainerID: victim.rt.ContainerID, IfName: "eth0"}, {ContainerID: next.rt.ContainerID, IfName: "eth0"}}})
	cancel()
	wantCode(t, "GC of the record naming another directory", err, 5)

	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ports[0]), "victim")
	ctx, cancel = victim.ctx()
	defer cancel()
	if err := victim.cni.CheckNetworkList(ctx, victim.list, victim.rt); err != nil {
		t.Fatalf("CHECK of the victim: %v", err)
	}
	if _, err := os.Stat(vrec.Dir); err != nil {
		t.Fatalf("the victim's forwarder directory: %v", err)
	}
	// The fake record is still there, for a person to look at.
	if _, err := os.Stat(st.RecordPath(fake)); err != nil {
		t.Errorf("the refused record: %v", err)
	}
	if err := os.Remove(st.RecordPath(fake)); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(st.BackupPath(fake))
}
