package cni

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/store"
)

func (b *bench) recordPath(cid string) string {
	return store.New(filepath.Join(b.dataDir, "records")).RecordPath(store.Key{Network: b.network, ContainerID: cid, IfName: "eth0"})
}

// A record file truncated between calls never orphans the attachment's
// rules: the next ADD reads its backup copy, keeps owning the live rule
// (no 100 against its own rule) and repairs the record; a DEL after
// another truncation removes the rule. When the backup copy is damaged
// too, or the record is of a newer format, ADD and DEL refuse with 5
// naming the record, and nothing is lost: the rule stays, the record
// stays byte for byte.
func TestDamagedRecord(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 1)
	conf := b.conf("", tcp(p, 80))
	b.must("ADD", "c1", conf)
	if err := os.Truncate(b.recordPath("c1"), 0); err != nil {
		t.Fatal(err)
	}
	b.must("ADD", "c1", conf)
	b.wantHost(rule("TCP", p, 80))
	if !strings.Contains(b.stderr.String(), "using its backup copy") {
		t.Errorf("stderr does not report the damaged record: %q", b.stderr.String())
	}
	if r := b.record("c1"); r == nil || len(r.Rules) != 1 {
		t.Fatalf("record after the repairing ADD: %+v", r)
	}
	b.must("CHECK", "c1", conf)
	os.Truncate(b.recordPath("c1"), 10)
	b.must("DEL", "c1", conf)
	b.wantHost()
	if r := b.record("c1"); r != nil {
		t.Fatalf("record after DEL: %+v", r)
	}
	// A record file removed (its backup copy left) is not a missing
	// record: DEL still removes the rule.
	b.must("ADD", "c1", conf)
	if err := os.Remove(b.recordPath("c1")); err != nil {
		t.Fatal(err)
	}
	b.must("DEL", "c1", conf)
	b.wantHost()
	if _, err := os.Stat(b.recordPath("c1") + ".bak"); !os.IsNotExist(err) {
		t.Fatalf("backup copy after DEL: %v", err)
	}

	for _, tc := range []struct{ name, record, backup, says string }{
		{"both damaged", "{", "", "backup copy"},
		{"newer format", `{"version":2,"network":"pp-net","containerID":"c1","ifname":"eth0","socket":"/x","rules":[]}`, "-", "newer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.must("ADD", "c1", conf)
			path := b.recordPath("c1")
			os.WriteFile(path, []byte(tc.record), 0o640)
			if tc.backup != "-" {
				os.WriteFile(path+".bak", []byte(tc.backup), 0o640)
			}
			for _, verb := range []string{"ADD", "DEL"} {
				b.mustFail(verb, "c1", conf, 5, path, tc.says, "nothing was changed")
				b.wantHost(rule("TCP", p, 80))
				if got, _ := os.ReadFile(path); !bytes.Equal(got, []byte(tc.record)) {
					t.Fatalf("%s changed the record to %q", verb, got)
				}
			}
			b.mustFail("GC", "", b.conf(`"cni.dev/valid-attachments":[]`), 5, path)
			b.wantHost(rule("TCP", p, 80))
			// The operator's way out: remove the rule, then the record.
			ts := b.srv.Tables()
			ts.Lookup("HOST").Rules = nil
			if err := b.srv.Update(ts); err != nil {
				t.Fatal(err)
			}
			os.Remove(path)
			os.Remove(path + ".bak")
			b.must("DEL", "c1", conf)
		})
	}
}
