package store

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

func sampleRules(t testing.TB) []OwnedRule {
	t.Helper()
	r1 := wire.NewRule(wire.ProtoTCP, netip.Addr{}, 8080, 8080, 80, wire.FlagDualStack)
	r2 := wire.NewRule(wire.ProtoUDP, netip.MustParseAddr("127.0.0.1"), 1000, 1010, 2000, wire.FlagWeak)
	if err := r2.SetInterface("lo"); err != nil {
		t.Fatal(err)
	}
	// A rule as a future server might send it: unknown flag bit, garbage
	// after the interface name's NUL, a target address.
	raw := r1.Append(nil)
	copy(raw[16:32], netip.MustParseAddr("fd00::5").AsSlice())
	raw[32], raw[33], raw[34], raw[40] = 'e', 't', 0, 'x'
	raw[55] = 0x80
	r3, err := wire.ParseRule(raw)
	if err != nil {
		t.Fatal(err)
	}
	return []OwnedRule{{Pif: wire.PifHost, Rule: r1}, {Pif: wire.PifHost, Rule: r2}, {Pif: "SPLICE", Rule: r3}}
}

func TestRecordRoundTrip(t *testing.T) {
	rules := sampleRules(t)
	rec := &Record{Version: FormatVersion, Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/run/s.sock", Rules: rules, Updated: time.Unix(1, 0).UTC()}
	b, err := Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rules) != len(rules) {
		t.Fatalf("%d rules back, want %d", len(got.Rules), len(rules))
	}
	for i := range rules {
		if got.Rules[i].Pif != rules[i].Pif || !bytes.Equal(got.Rules[i].Rule.Append(nil), rules[i].Rule.Append(nil)) {
			t.Errorf("rule %d: got %s %x, want %s %x", i, got.Rules[i].Pif, got.Rules[i].Rule.Append(nil), rules[i].Pif, rules[i].Rule.Append(nil))
		}
	}
	b2, err := Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("re-encoding differs:\n%s\n%s", b, b2)
	}
	// Readable by a person: pesto's notation next to the bytes.
	if !strings.Contains(string(b), `"rule": "TCP [*]:8080  =>  80 "`) {
		t.Errorf("record lacks the pesto notation of the rule:\n%s", b)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := `{"version":1,"network":"n","containerID":"c","ifname":"e","socket":"/s","rules":[%s]}`
	rule := `{"pif":"HOST","rule":"x","bytes":"` + strings.Repeat("00", 56) + `"}`
	for name, in := range map[string]string{
		"future version": strings.Replace(strings.Replace(good, "%s", rule, 1), `"version":1`, `"version":2`, 1),
		"short rule":     strings.Replace(good, "%s", `{"pif":"HOST","bytes":"0000"}`, 1),
		"bad hex":        strings.Replace(good, "%s", `{"pif":"HOST","bytes":"zz"}`, 1),
		"no pif":         strings.Replace(good, "%s", `{"bytes":"`+strings.Repeat("00", 56)+`"}`, 1),
		"no network":     strings.Replace(strings.Replace(good, "%s", rule, 1), `"network":"n"`, `"network":""`, 1),
		"not json":       `{"version":1`,
	} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: decoded %s", name, in)
		}
	}
	if _, err := Decode([]byte(strings.Replace(good, "%s", rule, 1))); err != nil {
		t.Errorf("good record refused: %v", err)
	}
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// lockedStore is a new store in a test directory and the lock, taken
// within a second, of the key net/c1/eth0 that most tests use.
func lockedStore(t *testing.T) (*Store, Key, *Locked) {
	t.Helper()
	s := New(t.TempDir())
	k := Key{"net", "c1", "eth0"}
	l, err := s.Lock(ctx(t, time.Second), k)
	if err != nil {
		t.Fatal(err)
	}
	return s, k, l
}

func TestWriteReadRemove(t *testing.T) {
	s, k, l := lockedStore(t)
	defer l.Unlock()
	if r, err := l.Read(); r != nil || err != nil {
		t.Fatalf("fresh store: %v %v", r, err)
	}
	if _, err := s.Get(k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of missing record: %v", err)
	}
	rec := &Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s", Rules: sampleRules(t)}
	if err := l.Write(rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Socket != "/s" || len(got.Rules) != 3 || got.Version != FormatVersion {
		t.Errorf("read back %+v", got)
	}
	// No temporary files left behind.
	des, _ := os.ReadDir(s.NetworkDir("net"))
	for _, de := range des {
		if strings.Contains(de.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", de.Name())
		}
	}
	if err := l.Write(&Record{Network: "net", ContainerID: "c2", IfName: "eth0"}); err == nil {
		t.Error("wrote another key's record under this lock")
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := s.Get(k); !errors.Is(err, ErrNotFound) {
		t.Errorf("record still there: %v", err)
	}
	if _, err := os.Stat(s.LockPath(k)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file still there: %v", err)
	}
}

// Arm makes an intent the record until a record is written, and
// Claimed gives the owned rules and then the pending ones.
func TestArmAndClaimed(t *testing.T) {
	s, k, l := lockedStore(t)
	defer l.Unlock()
	rules := sampleRules(t)
	rec := &Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s",
		Rules: rules[:1], Pending: []OwnedRule{rules[0], rules[1], rules[2]}, Intent: l.NextIntent()}
	if err := l.Arm(rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rules) != 1 || len(got.Pending) != 3 {
		t.Fatalf("read back %+v", got)
	}
	c := got.Claimed()
	if len(c) != 3 || !c[0].Rule.Equal(rules[0].Rule) || !c[1].Rule.Equal(rules[1].Rule) || !c[2].Rule.Equal(rules[2].Rule) {
		t.Fatalf("Claimed: %+v, want the owned rule then the two pending ones not owned", c)
	}
	if err := l.Write(&Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s", Rules: rules}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(k); err != nil || len(got.Pending) != 0 || len(got.Claimed()) != 3 || got.Intent != rec.Intent {
		t.Fatalf("after Write: %+v %v", got, err)
	}
}

func TestLockExcludesAndTimesOut(t *testing.T) {
	s, k, l1 := lockedStore(t)
	_, err := s.Lock(ctx(t, 30*time.Millisecond), k)
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, context.DeadlineExceeded) || be.Path != s.LockPath(k) {
		t.Fatalf("second lock: %v, want BusyError on %s", err, s.LockPath(k))
	}
	// Another attachment is not blocked.
	l3, err := s.Lock(ctx(t, time.Second), Key{"net", "c2", "eth0"})
	if err != nil {
		t.Fatalf("other key blocked: %v", err)
	}
	l3.Unlock()
	// A waiter gets the lock once it is released, even when the holder
	// removed the lock file meanwhile.
	got := make(chan error, 1)
	go func() {
		l2, err := s.Lock(ctx(t, 5*time.Second), k)
		if err == nil {
			_, err = os.Stat(s.LockPath(k)) // the waiter's lock file is the live one
			l2.Unlock()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := l1.Remove(); err != nil {
		t.Fatal(err)
	}
	l1.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
}

// TestLockSerializes runs read-modify-write cycles from many goroutines;
// without mutual exclusion some increments are lost.
func TestLockSerializes(t *testing.T) {
	s := New(t.TempDir())
	k := Key{"net", "c1", "eth0"}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.Lock(ctx(t, 20*time.Second), k)
			if err != nil {
				errs <- err
				return
			}
			defer l.Unlock()
			r, err := l.Read()
			if err != nil {
				errs <- err
				return
			}
			if r == nil {
				r = &Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName}
			}
			r.Rules = append(r.Rules, OwnedRule{Pif: wire.PifHost, Rule: wire.NewRule(wire.ProtoTCP, netip.Addr{}, uint16(len(r.Rules)+1), uint16(len(r.Rules)+1), 80, 0)})
			r.Updated = time.Time{}
			errs <- l.Write(r)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rules) != n {
		t.Fatalf("%d rules after %d serialized appends", len(r.Rules), n)
	}
}

func TestListAndEscaping(t *testing.T) {
	s := New(t.TempDir())
	keys := []Key{
		{"net", "a.b", "c"}, {"net", "a", "b.c"}, // would collide without a separator
		{"net", "x@y", "eth0"}, {"net", "..", "eth0"}, {"net", "z", "e/../../f"},
		{"other", "a", "b"},
	}
	for _, k := range keys {
		l, err := s.Lock(ctx(t, time.Second), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(&Record{Network: k.Network, ContainerID: k.ContainerID, IfName: k.IfName, Socket: "/s"}); err != nil {
			t.Fatal(err)
		}
		l.Unlock()
		if rel, err := filepath.Rel(s.NetworkDir(k.Network), s.RecordPath(k)); err != nil || strings.Contains(rel, "/") {
			t.Errorf("%s: record %s escapes its network directory", k, s.RecordPath(k))
		}
	}
	// A corrupt record is listed with its key and an error.
	bad := Key{"net", "bad", "eth0"}
	if err := os.WriteFile(s.RecordPath(bad), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Stray files are ignored.
	os.WriteFile(filepath.Join(s.NetworkDir("net"), ".a@c.json.tmp-1"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(s.NetworkDir("net"), "README"), []byte("x"), 0o600)

	es, err := s.List("net")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Key.ContainerID+"|"+e.Key.IfName)
		if e.Key == bad {
			var ce *CorruptError
			if !errors.As(e.Err, &ce) || e.Record != nil {
				t.Errorf("corrupt record listed as %+v", e)
			}
		} else if e.Err != nil || e.Record.Key() != e.Key {
			t.Errorf("%s: %+v", e.Key, e)
		}
	}
	want := "..|eth0 a|b.c a.b|c bad|eth0 x@y|eth0 z|e/../../f"
	if strings.Join(got, " ") != want {
		t.Errorf("List = %q, want %q", strings.Join(got, " "), want)
	}
	if es, err := s.List("nonexistent"); err != nil || len(es) != 0 {
		t.Errorf("List of unknown network: %v %v", es, err)
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", ".", "..", ".x", "a.b", "%41", "@", "a/b", "\x00\xff", "é"} {
		e := escape(s)
		if strings.ContainsAny(e, "/@") || e == "." || e == ".." {
			t.Errorf("escape(%q) = %q", s, e)
		}
		if u, err := unescape(e); err != nil || u != s {
			t.Errorf("unescape(escape(%q)) = %q, %v", s, u, err)
		}
	}
}

func TestKeyValidate(t *testing.T) {
	for _, k := range []Key{{"", "c", "e"}, {"n", "", "e"}, {"n", "c", ""}, {"n", "c\x00", "e"}} {
		if _, err := New(t.TempDir()).Lock(ctx(t, time.Second), k); err == nil {
			t.Errorf("locked invalid key %q", k)
		}
	}
}

// A chained attachment's side survives the record's encoding.
func TestSideRoundTrip(t *testing.T) {
	r := &Record{Version: FormatVersion, Network: "n", ContainerID: "c", IfName: "eth0", Netns: "/run/netns/p", Managed: true, Dir: "/d",
		Side: &Side{NetnsInode: 7, IfName: "pasta0", Table: 20563, Priority: 500,
			Addr4: netip.MustParsePrefix("169.254.100.2/30"), Gateway4: netip.MustParseAddr("169.254.100.1"),
			Addr6: netip.MustParsePrefix("fd41:e00e:44f8::2/64"), Gateway6: netip.MustParseAddr("fe80::1")}}
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Side == nil || *got.Side != *r.Side {
		t.Fatalf("side %+v after a round trip, want %+v\n%s", got.Side, r.Side, b)
	}
	r.Side = nil
	if b, _ := Encode(r); bytes.Contains(b, []byte(`"side"`)) {
		t.Errorf("a record without a side names one:\n%s", b)
	}
}
