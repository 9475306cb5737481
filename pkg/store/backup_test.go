package store

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// A damaged record file (truncated, overwritten) is read from its backup
// copy, and the next Write repairs it; a backup copy without a record file
// is never read; a record of a newer format is never replaced by its
// backup, and neither is read when both are damaged.
func TestBackupCopy(t *testing.T) {
	rules := sampleRules(t)
	k := Key{"net", "c1", "eth0"}
	write := func(t *testing.T, s *Store, r *Record) *Locked {
		t.Helper()
		l, err := s.Lock(ctx(t, time.Second), k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Unlock() })
		if r != nil {
			if err := l.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	rec := func() *Record {
		return &Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s", Rules: rules[:2]}
	}
	for _, damage := range []struct {
		name string
		b    []byte
	}{{"truncated", nil}, {"half", []byte(`{"version":1,"network":"net","contai`)}, {"other key", []byte(`{"version":1,"network":"net","containerID":"c2","ifname":"eth0","socket":"/s","rules":[]}`)}} {
		t.Run(damage.name, func(t *testing.T) {
			s := New(t.TempDir())
			l := write(t, s, rec())
			if err := os.WriteFile(s.RecordPath(k), damage.b, 0o640); err != nil {
				t.Fatal(err)
			}
			got, err := l.Read()
			var ce *CorruptError
			if err != nil || got == nil || len(got.Rules) != 2 || !errors.As(l.Damaged(), &ce) || ce.Path != s.RecordPath(k) || ce.Backup != s.BackupPath(k) {
				t.Fatalf("Read of a damaged record: %+v, %v, damaged %v", got, err, l.Damaged())
			}
			if g, damaged, err := s.Load(k); err != nil || len(g.Rules) != 2 || damaged == nil {
				t.Fatalf("Load: %+v %v %v", g, damaged, err)
			}
			if es, err := s.List("net"); err != nil || len(es) != 1 || es[0].Record == nil || es[0].Damaged == nil || es[0].Err != nil {
				t.Fatalf("List: %+v %v", es, err)
			}
			if err := l.Write(got); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Read(); err != nil || l.Damaged() != nil {
				t.Fatalf("after Write: %v, damaged %v", err, l.Damaged())
			}
			a, _ := os.ReadFile(s.RecordPath(k))
			b, _ := os.ReadFile(s.BackupPath(k))
			if !bytes.Equal(a, b) {
				t.Errorf("record and backup differ after Write:\n%s\n%s", a, b)
			}
		})
	}
	t.Run("both damaged", func(t *testing.T) {
		s := New(t.TempDir())
		l := write(t, s, rec())
		os.WriteFile(s.RecordPath(k), []byte("{"), 0o640)
		os.WriteFile(s.BackupPath(k), nil, 0o640)
		r, err := l.Read()
		var ce *CorruptError
		if r != nil || !errors.As(err, &ce) || ce.BackupErr == nil || !strings.Contains(err.Error(), s.BackupPath(k)) {
			t.Fatalf("Read: %+v %v", r, err)
		}
	})
	t.Run("record file lost", func(t *testing.T) {
		s := New(t.TempDir())
		l := write(t, s, rec())
		if err := os.Remove(s.RecordPath(k)); err != nil {
			t.Fatal(err)
		}
		r, err := l.Read()
		if err != nil || r == nil || len(r.Rules) != 2 || l.Damaged() == nil || !strings.Contains(l.Damaged().Error(), "missing") {
			t.Fatalf("Read with only the backup copy: %+v %v, damaged %v", r, err, l.Damaged())
		}
		if es, err := s.List("net"); err != nil || len(es) != 1 || es[0].Record == nil || es[0].Path != s.RecordPath(k) {
			t.Fatalf("List: %+v %v", es, err)
		}
		if err := l.Write(r); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.RecordPath(k)); err != nil {
			t.Fatalf("Write did not restore the record file: %v", err)
		}
		if err := l.Remove(); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{s.RecordPath(k), s.BackupPath(k)} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Remove left %s: %v", p, err)
			}
		}
		if r, err := l.Read(); r != nil || err != nil {
			t.Fatalf("Read after Remove: %+v %v", r, err)
		}
	})
	t.Run("newer format", func(t *testing.T) {
		s := New(t.TempDir())
		l := write(t, s, rec())
		future := []byte(`{"version":7,"network":"net","containerID":"c1","ifname":"eth0","socket":"/s","rules":[]}`)
		os.WriteFile(s.RecordPath(k), future, 0o640)
		r, err := l.Read()
		var (
			ce *CorruptError
			ve *VersionError
		)
		if r != nil || !errors.As(err, &ce) || ce.Version != 7 || !errors.As(err, &ve) || !strings.Contains(err.Error(), "newer") {
			t.Fatalf("Read of a newer record: %+v %v", r, err)
		}
	})
}
