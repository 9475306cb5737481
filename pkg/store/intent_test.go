package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"
)

// An armed intent is the record for every reader until a record is
// written after it; a lock file holding one is a record for List, Drop
// and Sweep; Remove takes it away first.
func TestIntentLifecycle(t *testing.T) {
	s, k, l := lockedStore(t)
	rules := sampleRules(t)
	// A first ADD killed after its intent: no record file, the intent alone.
	in := &Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s", Pending: rules[:2], Intent: l.NextIntent()}
	if err := l.Arm(in); err != nil {
		t.Fatal(err)
	}
	if err := l.Drop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.LockPath(k)); err != nil {
		t.Fatalf("Drop removed a lock file that holds an intent: %v", err)
	}
	got, err := s.Get(k)
	if err != nil || len(got.Pending) != 2 || got.Socket != "/s" {
		t.Fatalf("Get of an intent alone: %+v %v", got, err)
	}
	es, err := s.List("net")
	if err != nil || len(es) != 1 || es[0].Key != k || es[0].Record == nil {
		t.Fatalf("List with an intent alone: %+v %v", es, err)
	}
	if rm, err := s.Sweep("net"); err != nil || len(rm) != 0 {
		t.Fatalf("Sweep removed %v (%v) of an intent alone", rm, err)
	}

	// The next call reads it, writes it as the record, and arms its own.
	l, err = s.Lock(ctx(t, time.Second), k)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := l.Read()
	if err != nil || !l.FromIntent() || len(prev.Pending) != 2 {
		t.Fatalf("Read: %+v %v (from intent %v)", prev, err, l.FromIntent())
	}
	if err := l.Write(prev); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.LockPath(k)); err != nil || fi.Size() != 0 {
		t.Fatalf("a record written after an intent left the intent in the lock file: %v %v", fi, err)
	}
	next := *prev
	next.Pending = rules
	next.Intent = l.NextIntent()
	if next.Intent <= prev.Intent {
		t.Fatalf("intent numbers do not grow: %d after %d", next.Intent, prev.Intent)
	}
	if err := l.Arm(&next); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(k); err != nil || len(got.Pending) != len(rules) {
		t.Fatalf("Get after the second intent: %+v %v", got, err)
	}
	// A record written after it supersedes it.
	if err := l.Write(&Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s", Rules: rules[:1]}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(k); err != nil || len(got.Pending) != 0 || len(got.Rules) != 1 || got.Intent < next.Intent {
		t.Fatalf("Get after the record: %+v %v", got, err)
	}
	// Killed between the record's rename and emptying the lock file: the
	// intent is still there, and its number says it is superseded.
	old, err := encodeIntent(&next)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.f.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(k); err != nil || len(got.Pending) != 0 || len(got.Rules) != 1 {
		t.Fatalf("an intent the record superseded is read: %+v %v", got, err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if _, err := s.Get(k); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get after Remove: %v", err)
	}
}

// An intent cut short while it was written (the writer killed within
// its pwrite) does not count: its writer sent nothing. A lock file
// holding only that is no record: Sweep removes it.
func TestIntentCutShort(t *testing.T) {
	s, k, l := lockedStore(t)
	rules := sampleRules(t)
	b, err := encodeIntent(&Record{Version: FormatVersion, Network: "net", ContainerID: "c1", IfName: "eth0", Pending: rules, Intent: 1,
		Updated: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{len(b) - 1, len(b) / 2, intentHeader, 3} {
		if err := l.f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.f.WriteAt(b[:cut], 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(k); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("an intent cut at %d of %d bytes counts: %v", cut, len(b), err)
		}
	}
	// A byte changed where the record still decodes (a digit of its
	// time): only the checksum tells.
	bad := append([]byte(nil), b...)
	i := bytes.Index(bad, []byte(`"updated": "`)) + len(`"updated": "`)
	if i < len(`"updated": "`) || bad[i] < '0' || bad[i] > '8' {
		t.Fatalf("no time to change in %s", bad)
	}
	bad[i]++
	if _, err := Decode(bad[intentHeader:]); err != nil {
		t.Fatalf("the changed record does not decode: %v", err)
	}
	if _, err := l.f.WriteAt(bad, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(k); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a damaged intent counts: %v", err)
	}
	l.Unlock()
	if rm, err := s.Sweep("net"); err != nil || len(rm) != 1 {
		t.Fatalf("Sweep of a lock file with a damaged intent: %v %v", rm, err)
	}
}

// A record that cannot be read may or may not supersede the intent:
// nothing is decided, the reader gets the record's error.
func TestIntentOverUnreadableRecord(t *testing.T) {
	s, k, l := lockedStore(t)
	defer l.Unlock()
	if err := l.Write(&Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Arm(&Record{Network: "net", ContainerID: "c1", IfName: "eth0", Socket: "/s", Pending: sampleRules(t), Intent: l.NextIntent()}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.RecordPath(k), s.BackupPath(k)} {
		if err := os.WriteFile(p, []byte("{"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	var ce *CorruptError
	if _, err := s.Get(k); !errors.As(err, &ce) {
		t.Fatalf("Get: %v, want the record's CorruptError", err)
	}
}

// The queue: a leader takes what is posted, answers it in the request's
// own file, and the poster, waiting, gets its answer; a request whose
// poster is gone is dropped; one a leader answered and did not remove
// is not served twice.
func TestQueue(t *testing.T) {
	q, err := OpenQueue(t.TempDir(), "x")
	defer q.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err := q.TryLead()
	if err != nil || l == nil {
		t.Fatalf("TryLead: %v", err)
	}
	if l2, err := q.TryLead(); err != nil || l2 != nil {
		t.Fatalf("a second TryLead got the lead: %v", err)
	}
	a, err := q.Post([]byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	gone, err := q.Post([]byte(`{"gone":1}`))
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	answered := make(chan []byte)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, lead, err := a.Await(ctx, time.Hour) // no polling: inotify wakes it
		if lead != nil || err != nil {
			t.Errorf("Await: lead %v, %v", lead, err)
		}
		answered <- b
	}()
	reqs, err := l.Pending()
	if err != nil || len(reqs) != 2 {
		t.Fatalf("Pending: %+v %v", reqs, err)
	}
	for i := range reqs {
		ok, err := l.Take(&reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		switch string(reqs[i].Payload) {
		case `{"gone":1}`:
			if ok {
				t.Fatal("took the request of a poster that is gone")
			}
		case `{"a":1}`:
			if !ok {
				t.Fatal("did not take a live poster's request")
			}
			if err := l.Answer(reqs[i], []byte("yes")); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case b := <-answered:
		if string(b) != "yes" {
			t.Fatalf("answer %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the poster was not woken by its answer")
	}
	if reqs, err := l.Pending(); err != nil || len(reqs) != 0 {
		t.Fatalf("Pending after: %+v %v", reqs, err)
	}
	l.Release()
	if answeredAt(append([]byte(`{"x":"ppanswer"}`), encodeFrame(answerMagic, []byte("ok"))...)) != len(`{"x":"ppanswer"}`) {
		t.Error("answeredAt does not find the answer after a request that holds the magic")
	}
	if answeredAt([]byte(`{"x":"ppanswer"}`)) != -1 {
		t.Error("answeredAt finds an answer in a request alone")
	}
}
