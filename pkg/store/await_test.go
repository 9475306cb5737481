package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A poster with inotify sleeps until its answer or the lead comes: while
// a leader holds the lead and writes nothing, it looks for its answer
// once, however short its poll, and then only when its context ends.
func TestAwaitDoesNotPoll(t *testing.T) {
	q, err := OpenQueue(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	l, err := q.TryLead()
	if err != nil || l == nil {
		t.Fatalf("TryLead: %v", err)
	}
	defer l.Release()
	tk, err := q.Post([]byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ans, lead, err := tk.Await(ctx, time.Millisecond)
	var be *BusyError
	if ans != nil || lead != nil || !errors.As(err, &be) {
		t.Fatalf("Await with no answer and the lead held: %q, lead %v, %v", ans, lead, err)
	}
	if tk.looked != 1 {
		t.Fatalf("looked for the answer %d times while nothing was written, want 1: it polls", tk.looked)
	}
}
