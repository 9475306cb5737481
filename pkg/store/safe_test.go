package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// outside is a file outside the store with known contents; check fails
// the test when it changed.
func outside(t *testing.T) (path string, check func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(path, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || string(b) != "precious\n" {
			t.Errorf("the file outside the store changed: %q %v", b, err)
		}
	}
}

// Record, backup and lock files that are not regular files are refused
// with an *UnsafeError naming them, at once (a FIFO does not hang the
// open), and nothing is read, written or removed through them.
func TestFilesNotFollowed(t *testing.T) {
	k := Key{"net", "c1", "eth0"}
	rec := &Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s", Rules: sampleRules(t)}
	makers := map[string]func(t *testing.T, path, target string){
		"symlink": func(t *testing.T, path, target string) {
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		},
		"dangling symlink": func(t *testing.T, path, target string) {
			if err := os.Symlink(target+".none", path); err != nil {
				t.Fatal(err)
			}
		},
		"directory": func(t *testing.T, path, _ string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		},
		"fifo": func(t *testing.T, path, _ string) {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, mk := range makers {
		for _, which := range []string{"lock", "record", "backup"} {
			t.Run(name+"/"+which, func(t *testing.T) {
				s := New(t.TempDir())
				target, check := outside(t)
				defer check()
				if err := EnsureDir(s.Dir); err != nil {
					t.Fatal(err)
				}
				if err := EnsureDir(s.NetworkDir("net")); err != nil {
					t.Fatal(err)
				}
				path := map[string]string{"lock": s.LockPath(k), "record": s.RecordPath(k), "backup": s.BackupPath(k)}[which]
				if which == "backup" {
					// A damaged record makes Read go to the backup copy.
					os.WriteFile(s.RecordPath(k), []byte("{"), 0o600)
				}
				mk(t, path, target)
				var ue *UnsafeError
				l, err := s.Lock(ctx(t, 2*time.Second), k)
				if which == "lock" {
					if !errors.As(err, &ue) || ue.Path != path {
						t.Fatalf("Lock: %v, want an UnsafeError naming %s", err, path)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock()
				_, err = l.Read()
				if which == "backup" {
					// The damaged record is the error; its backup copy
					// is why it cannot be read from there either.
					var ce *CorruptError
					if !errors.As(err, &ce) || !errors.As(ce.BackupErr, &ue) || ue.Path != path {
						t.Fatalf("Read: %v, want a CorruptError whose backup is refused as unsafe", err)
					}
				} else if !errors.As(err, &ue) || ue.Path != path {
					t.Fatalf("Read: %v, want an UnsafeError naming %s", err, path)
				}
				if _, err := s.Get(k); err == nil {
					t.Errorf("Get succeeded")
				}
				if err := l.Write(rec); !errors.As(err, &ue) || ue.Path != path {
					t.Fatalf("Write: %v, want an UnsafeError naming %s", err, path)
				}
			})
		}
	}
}

// The store's directories must be real directories of root or this user,
// not writable by others: a symbolic link to a directory elsewhere is
// refused and nothing is created there.
func TestDirsChecked(t *testing.T) {
	k := Key{"net", "c1", "eth0"}
	for _, tc := range []struct {
		name string
		mk   func(t *testing.T, s *Store, elsewhere string)
		says string
	}{
		{"network dir is a link", func(t *testing.T, s *Store, elsewhere string) {
			os.Mkdir(s.Dir, 0o700)
			if err := os.Symlink(elsewhere, s.NetworkDir("net")); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"store dir is a link", func(t *testing.T, s *Store, elsewhere string) {
			if err := os.Symlink(elsewhere, s.Dir); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"writable by others", func(t *testing.T, s *Store, _ string) {
			os.Mkdir(s.Dir, 0o700)
			os.Mkdir(s.NetworkDir("net"), 0o700)
			os.Chmod(s.NetworkDir("net"), 0o777)
		}, "writable by group or others"},
		{"a file", func(t *testing.T, s *Store, _ string) {
			os.WriteFile(s.Dir, nil, 0o600)
		}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(filepath.Join(t.TempDir(), "records"))
			elsewhere := t.TempDir()
			tc.mk(t, s, elsewhere)
			var ue *UnsafeError
			if _, err := s.Lock(ctx(t, time.Second), k); !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Lock: %v, want an UnsafeError saying %q", err, tc.says)
			}
			if _, err := s.List("net"); !errors.As(err, &ue) {
				t.Errorf("List: %v", err)
			}
			if _, err := s.Get(k); !errors.As(err, &ue) {
				t.Errorf("Get: %v", err)
			}
			if _, err := s.Sweep("net"); !errors.As(err, &ue) {
				t.Errorf("Sweep: %v", err)
			}
			if err := s.Room(1); !errors.As(err, &ue) && tc.name != "network dir is a link" && tc.name != "writable by others" {
				t.Errorf("Room: %v", err)
			}
			if des, _ := os.ReadDir(elsewhere); len(des) != 0 {
				t.Errorf("files made in the directory a link points to: %v", des)
			}
		})
	}
}

// Sweep removes the leftovers of refused and killed calls (lock files
// without a record, temporary files, probe files) and leaves records,
// their files (a backup copy alone stands for its record), and whatever a
// call holds.
func TestSweep(t *testing.T) {
	s := New(t.TempDir())
	write := func(k Key) {
		l, err := s.Lock(ctx(t, time.Second), k)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock()
		if err := l.Write(&Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s"}); err != nil {
			t.Fatal(err)
		}
	}
	kept, lost, refused, killed, held := Key{"net", "kept", "eth0"}, Key{"net", "lost", "eth0"}, Key{"net", "refused", "eth0"}, Key{"net", "killed", "eth0"}, Key{"net", "held", "eth0"}
	write(kept)
	write(lost)
	dir := s.NetworkDir("net")
	// A refused call: its lock file alone.
	for _, k := range []Key{refused, killed} {
		l, err := s.Lock(ctx(t, time.Second), k)
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock()
	}
	// Killed calls: temporary files of unfinished writes, of an
	// attachment without a record and of one with a record.
	os.WriteFile(filepath.Join(dir, ".killed@eth0.json.tmp-123"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, ".kept@eth0.json.bak.tmp-456"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(s.Dir, ".probe-789"), nil, 0o600)
	// A container ID with ".json" in it, its record and a temporary file.
	odd := Key{"net", "a.json", "eth0"}
	write(odd)
	os.WriteFile(filepath.Join(dir, ".a.json@eth0.json.tmp-9"), []byte("{"), 0o600)
	// Names that are none of the store's are left alone.
	for _, n := range []string{".tmp-1", "..tmp-", ".x.tmp-2", "README"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	// A record whose file was lost: its backup copy stands for it.
	os.Remove(s.RecordPath(lost))
	// A call in progress holds its lock, with a temporary file.
	lh, err := s.Lock(ctx(t, time.Second), held)
	if err != nil {
		t.Fatal(err)
	}
	defer lh.Unlock()
	os.WriteFile(filepath.Join(dir, ".held@eth0.json.tmp-1"), []byte("{"), 0o600)

	removed, err := s.Sweep("net")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range removed {
		removed[i], _ = filepath.Rel(s.Dir, p)
	}
	sort.Strings(removed)
	want := []string{".probe-789", "net/.a.json@eth0.json.tmp-9", "net/.kept@eth0.json.bak.tmp-456", "net/.killed@eth0.json.tmp-123", "net/killed@eth0.lock", "net/refused@eth0.lock"}
	if !slices.Equal(removed, want) {
		t.Errorf("Sweep removed\n %q\nwant\n %q", removed, want)
	}
	des, _ := os.ReadDir(dir)
	var left []string
	for _, de := range des {
		left = append(left, de.Name())
	}
	wantLeft := []string{"..tmp-", ".held@eth0.json.tmp-1", ".tmp-1", ".x.tmp-2", "README", "a.json@eth0.json", "a.json@eth0.json.bak", "a.json@eth0.lock", "held@eth0.lock", "kept@eth0.json", "kept@eth0.json.bak", "kept@eth0.lock", "lost@eth0.json.bak", "lost@eth0.lock"}
	if !slices.Equal(left, wantLeft) {
		t.Errorf("left\n %q\nwant\n %q", left, wantLeft)
	}
	if r, err := s.Get(kept); err != nil || r == nil {
		t.Errorf("kept record: %v", err)
	}
}

func TestRoom(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "records"))
	if err := s.Room(64 << 10); err != nil {
		t.Fatal(err)
	}
	if des, _ := os.ReadDir(s.Dir); len(des) != 0 {
		t.Errorf("Room left %v", des)
	}
	// More than any file system here has.
	if err := s.Room(1 << 62); !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), s.Dir) {
		t.Errorf("Room of 4 EiB: %v, want ENOSPC naming %s", err, s.Dir)
	}
}
