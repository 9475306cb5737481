package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/store"
)

func (b *bench) key(cid string) store.Key {
	return store.Key{Network: b.network, ContainerID: cid, IfName: "eth0"}
}

func (b *bench) store() *store.Store { return store.New(filepath.Join(b.dataDir, "records")) }

// A socket path longer than a UNIX socket address holds, once expanded,
// is a configuration error (7) naming the path and its length, found
// before anything is recorded or sent; DEL and GC of that attachment
// succeed. A managed forwarder's socket under a too long dataDir is 7
// naming dataDir.
func TestSocketPathTooLong(t *testing.T) {
	b := newBench(t)
	cid := strings.Repeat("c", 64)
	tmpl := "/run/" + strings.Repeat("d", 40) + "/${CNI_CONTAINERID}.sock"
	long := "/run/" + strings.Repeat("d", 40) + "/" + cid + ".sock"
	conf := b.conf(`"socket":"`+tmpl+`"`, tcp(freePorts(t, 1), 80))
	b.mustFail("ADD", cid, conf, 7, long, fmt.Sprintf("%d bytes", len(long)), "at most 107")
	if _, err := os.Stat(filepath.Join(b.dataDir, "records")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused ADD left files in dataDir: %v", err)
	}
	b.must("DEL", cid, conf)
	b.must("GC", "", b.conf(`"socket":"`+tmpl+`","cni.dev/valid-attachments":[]`))
	fixed := "/run/" + strings.Repeat("s", 110)
	b.mustFail("STATUS", "", b.conf(`"socket":"`+fixed+`"`), 7, fixed, "115 bytes")
	// The longest that fits is fine as a path (nobody listens there).
	ok := "/run/" + strings.Repeat("s", maxSocketPath-5)
	if _, err := expandSocket("socket", ok, Env{}); err != nil {
		t.Errorf("a %d-byte socket path refused: %v", len(ok), err)
	}

	longData := filepath.Join(t.TempDir(), strings.Repeat("x", 80))
	m := newBench(t)
	m.mustFail("ADD", "c1", m.conf(`"socket":null,"pasta":"/bin/true","dataDir":"`+longData+`"`, tcp(freePorts(t, 1), 80)), 7, "dataDir", longData)
	if _, err := os.Stat(longData); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused managed ADD made dataDir: %v", err)
	}
}

// Record and lock files are never followed: a symbolic link to a file
// outside dataDir, a FIFO or a directory in their place makes ADD, DEL
// and CHECK fail with 5 naming it, at once, and the file outside is
// neither read into a record nor changed, and the link stays.
func TestRecordNotFollowed(t *testing.T) {
	for _, which := range []string{"record link", "lock link", "record fifo", "lock fifo", "record dir"} {
		t.Run(which, func(t *testing.T) {
			b := newBench(t)
			p := freePorts(t, 1)
			conf := b.conf("", tcp(p, 80))
			b.must("ADD", "c1", conf)
			b.must("DEL", "c1", conf)
			precious := filepath.Join(t.TempDir(), "precious.json")
			// A valid record of this attachment, so that following the
			// link would make DEL remove the rule it names.
			content := fmt.Sprintf(`{"version":1,"network":%q,"containerID":"c1","ifname":"eth0","socket":%q,"rules":[]}`+"\n", b.network, b.srv.Path)
			if err := os.WriteFile(precious, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			path := b.store().RecordPath(b.key("c1"))
			if strings.HasPrefix(which, "lock") {
				path = b.store().LockPath(b.key("c1"))
			}
			switch {
			case strings.HasSuffix(which, "link"):
				if err := os.Symlink(precious, path); err != nil {
					t.Fatal(err)
				}
			case strings.HasSuffix(which, "fifo"):
				if err := unix.Mkfifo(path, 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, verb := range []string{"ADD", "DEL"} {
				b.mustFail(verb, "c1", conf, 5, path)
			}
			if strings.HasPrefix(which, "record") {
				b.mustFail("CHECK", "c1", conf, 5, path)
				b.mustFail("GC", "", b.conf(`"cni.dev/valid-attachments":[]`), 5, path)
			}
			if got, err := os.ReadFile(precious); err != nil || string(got) != content {
				t.Errorf("the file outside dataDir changed: %q %v", got, err)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("the refused path was removed: %v", err)
			}
			b.wantHost()
		})
	}
}

// A record can never make the plugin stop or remove a directory other
// than its attachment's own under dataDir/forwarders: DEL, GC and ADD
// refuse (5) and the directory stays with its contents.
func TestRecordCannotNameAnotherDir(t *testing.T) {
	b := newBench(t)
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(b.dataDir, "forwarders", "0123456789abcdef") // a child of forwarders, but another key's
	os.MkdirAll(own, 0o700)
	for _, dir := range []string{victim, own, filepath.Join(b.dataDir, "forwarders", "..", "..")} {
		b.writeRecord("c1", &store.Record{Socket: filepath.Join(dir, "pasta.sock"), Managed: true, Dir: dir})
		managed := b.conf(`"socket":null,"pasta":"/bin/true"`)
		for _, verb := range []string{"DEL", "ADD", "CHECK"} {
			b.mustFail(verb, "c1", managed, 5, dir, "not this attachment's")
		}
		b.mustFail("GC", "", b.conf(`"cni.dev/valid-attachments":[]`), 5, dir)
		for _, d := range []string{victim, own} {
			if _, err := os.Stat(d); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
		}
		if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
			t.Fatal(err)
		}
	}
}

// The data directory and the directories in it must be real directories
// of root or this user that others cannot write to.
func TestDataDirChecked(t *testing.T) {
	b := newBench(t)
	elsewhere := t.TempDir()
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	conf := b.conf(`"dataDir":"`+link+`"`, tcp(freePorts(t, 1), 80))
	b.mustFail("ADD", "c1", conf, 5, link, "symbolic link")
	b.mustFail("DEL", "c1", conf, 5, link)
	b.mustFail("STATUS", "", conf, 50, link)
	if des, _ := os.ReadDir(elsewhere); len(des) != 0 {
		t.Errorf("files made through the link: %v", des)
	}
	open := t.TempDir()
	os.Chmod(open, 0o777)
	b.mustFail("ADD", "c1", b.conf(`"dataDir":"`+open+`"`, tcp(freePorts(t, 1), 80)), 5, open, "writable by group or others")
	// records/ a link: refused too.
	b.must("ADD", "c1", b.conf(""))
	os.RemoveAll(filepath.Join(b.dataDir, "records"))
	os.Symlink(elsewhere, filepath.Join(b.dataDir, "records"))
	b.mustFail("ADD", "c1", b.conf("", tcp(freePorts(t, 1), 80)), 5, "records", "symbolic link")
	if des, _ := os.ReadDir(elsewhere); len(des) != 0 {
		t.Errorf("files made through the link: %v", des)
	}
}

// GC removes the lock files and temporary files that refused and killed
// calls left, and none that a running call holds.
func TestGCSweeps(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 1)
	b.must("ADD", "c1", b.conf("", tcp(p, 80)))
	st := b.store()
	for _, cid := range []string{"dead1", "dead2"} {
		l, err := st.Lock(context.Background(), b.key(cid))
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock()
	}
	dir := st.NetworkDir(b.network)
	os.WriteFile(filepath.Join(dir, ".dead1@eth0.json.tmp-1"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, ".c1@eth0.json.tmp-2"), []byte("{"), 0o600)
	held, err := st.Lock(context.Background(), b.key("busy"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	b.must("GC", "", b.conf(`"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]`))
	des, _ := os.ReadDir(dir)
	var left []string
	for _, de := range des {
		left = append(left, de.Name())
	}
	if got, want := strings.Join(left, " "), "busy@eth0.lock c1@eth0.json c1@eth0.json.bak c1@eth0.lock"; got != want {
		t.Errorf("after GC: %s, want %s", got, want)
	}
	b.wantHost(rule("TCP", p, 80))
}

// An ADD refused after it took the attachment's lock, having recorded
// nothing, leaves no lock file behind (without waiting for a GC): here a
// chained ADD whose pod namespace is not there.
func TestRefusedAddLeavesNoLock(t *testing.T) {
	b := newBench(t)
	prev := `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/c1"}],"ips":[{"address":"10.88.0.2/16","interface":0}]}`
	b.mustFail("ADD", "c1", b.conf(`"socket":null,"pasta":"/bin/true","prevResult":`+prev, tcp(freePorts(t, 1), 80)), 11, "/var/run/netns/c1: the pod's network namespace is gone")
	des, err := os.ReadDir(b.store().NetworkDir(b.network))
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 0 {
		t.Errorf("a refused ADD left %v", des)
	}
}
