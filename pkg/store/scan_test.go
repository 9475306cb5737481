package store

import (
	"context"
	"fmt"
	"testing"
)

// Scan visits every record of a network in turns of at most n keys, each
// call going on where the last stopped: within a round of calls every
// record comes up, and none twice in a call.
func TestScan(t *testing.T) {
	s := New(t.TempDir() + "/records")
	if keys, err := s.Scan("net", 3); err != nil || len(keys) != 0 {
		t.Fatalf("Scan of a missing network: %v, %v", keys, err)
	}
	const records = 17
	for i := range records {
		k := Key{"net", fmt.Sprintf("c%02d", i), "eth0"}
		l, err := s.Lock(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(&Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s"}); err != nil {
			t.Fatal(err)
		}
		l.Unlock()
	}
	seen := map[Key]int{}
	const n = 3
	rounds := (records + n - 1) / n
	for call := range 2 * rounds {
		keys, err := s.Scan("net", n)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 || len(keys) > n {
			t.Fatalf("call %d: %d keys, want 1 to %d", call, len(keys), n)
		}
		inCall := map[Key]bool{}
		for _, k := range keys {
			if inCall[k] {
				t.Fatalf("call %d: %s twice", call, k)
			}
			inCall[k] = true
			seen[k]++
		}
	}
	if len(seen) != records {
		t.Fatalf("%d of %d records came up in %d calls", len(seen), records, 2*rounds)
	}
	for k, c := range seen {
		if c < 1 || c > 3 {
			t.Errorf("%s came up %d times in two rounds", k, c)
		}
	}
}
