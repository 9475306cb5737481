package store

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzClassify: classify never panics, and for the file names the store
// makes of any key it finds the attachment's name and the file's kind.
func FuzzClassify(f *testing.F) {
	f.Add("c1", "eth0", ".c1@eth0.json.tmp-1")
	f.Add("a.json", "eth0", "..tmp-")
	f.Add("..", "e/../../f", ".x.tmp-2")
	f.Add("%41", "@", "a.json@eth0.json.bak")
	f.Fuzz(func(t *testing.T, cid, ifname, raw string) {
		classify(raw) // any name: no panic
		k := Key{Network: "n", ContainerID: cid, IfName: ifname}
		if k.Validate() != nil {
			return
		}
		s := New("/d")
		name := strings.TrimSuffix(filepath.Base(s.RecordPath(k)), recordSuffix)
		for path, want := range map[string]int{
			s.RecordPath(k): fileRecord, s.BackupPath(k): fileBackup, s.LockPath(k): fileLock,
			filepath.Join("/d", "."+filepath.Base(s.RecordPath(k))+tmpInfix+"123"): fileTemp,
			filepath.Join("/d", "."+filepath.Base(s.BackupPath(k))+tmpInfix+"456"): fileTemp,
		} {
			got, kind := classify(filepath.Base(path))
			if got != name || kind != want {
				t.Errorf("classify(%q) = %q, %d; want %q, %d", filepath.Base(path), got, kind, name, want)
			}
		}
	})
}
