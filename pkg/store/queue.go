package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A Queue is where calls of separate processes that need the same
// resource meet, with no daemon: one of them, the leader, does the work
// of all that are waiting, and each learns its own outcome. pkg/attach
// uses one per forwarder, so that the ADDs of a burst share one
// transaction. All of it is files in one directory, with the store's
// rules (a real directory of the plugin's own, regular files opened
// without following links, atomic renames):
//
//	DIR/leader        flock'ed exclusively by the leader
//	DIR/ID.req        a request, written whole (temporary file, rename);
//	                  its poster holds a shared flock on it while it waits
//	DIR/ID.run        a request a leader took (renamed from ID.req)
//	DIR/ID.out        its outcome, written whole by the leader
//
// A poster that dies releases its flock: a leader then drops its request
// (nobody waits for it, and the runtime that ran it will call DEL). A
// leader that dies releases the leader lock: the next leader takes the
// requests it had taken (ID.run without ID.out) again. Payloads are the
// caller's.
type Queue struct {
	Dir string
}

// Queue file names.
const (
	queueLeader = "leader"
	queueReq    = ".req"
	queueRun    = ".run"
	queueOut    = ".out"
	queueTmp    = ".tmp-"
	// queueStale is the age past which a leader removes outcomes nobody
	// fetched and temporary files of posts that never finished.
	queueStale = time.Minute
)

// OpenQueue makes (or checks) the queue's directory, dir, and its parent
// (see EnsureDir).
func OpenQueue(dir string) (*Queue, error) {
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := EnsureDir(d); err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	return &Queue{Dir: dir}, nil
}

// Lead is the held leader lock of a queue.
type Lead struct {
	q *Queue
	f *os.File
}

func (q *Queue) openLeader() (*os.File, error) {
	f, err := openRegular(filepath.Join(q.Dir, queueLeader), unix.O_RDWR|unix.O_CREAT, fileMode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return f, nil
}

// TryLead takes the leader lock if no one holds it (nil, nil otherwise).
func (q *Queue) TryLead() (*Lead, error) {
	f, err := q.openLeader()
	if err != nil {
		return nil, err
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("queue: lock %s: %w", f.Name(), err)
	}
	return &Lead{q: q, f: f}, nil
}

// Release gives the lead up.
func (l *Lead) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// Ticket is a posted request, whose poster waits.
type Ticket struct {
	q  *Queue
	ID string
	f  *os.File // the request file, flock'ed shared: the poster lives
}

// Post writes a request with payload, and holds it as its poster.
func (q *Queue) Post(payload []byte) (*Ticket, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	id := hex.EncodeToString(b[:])
	tmp := filepath.Join(q.Dir, queueTmp+id)
	f, err := openRegular(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	fail := func(err error) (*Ticket, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("queue: post %s: %w", id, err)
	}
	if err := flock(f, unix.LOCK_SH); err != nil {
		return fail(err)
	}
	if _, err := f.Write(payload); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(q.Dir, id+queueReq)); err != nil {
		return fail(err)
	}
	return &Ticket{q: q, ID: id, f: f}, nil
}

// Close ends the poster's wait: a leader that has not taken the request
// yet drops it.
func (t *Ticket) Close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// Withdraw takes the request back, unless a leader took it already
// (false): then its outcome will come.
func (t *Ticket) Withdraw() (bool, error) {
	err := os.Remove(filepath.Join(t.q.Dir, t.ID+queueReq))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: %w", err)
	}
	t.Close()
	return true, nil
}

// Outcome returns the request's outcome and removes it, or nil when
// there is none yet.
func (t *Ticket) Outcome() ([]byte, error) {
	path := filepath.Join(t.q.Dir, t.ID+queueOut)
	b, err := readRegular(path, maxRecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return b, nil
}

// Await waits for the request's outcome or for the lead, whichever comes
// first, until ctx ends. It returns the outcome (lead nil) or the lead
// (out nil); the leader must answer the request itself when it is still
// pending. The lead is waited for by a blocking flock, so it comes as soon
// as the leader before lets go; the outcome is looked for every
// pollEvery, so a leader that answers in the middle of its work wakes
// its waiters without giving up the lead.
func (t *Ticket) Await(ctx context.Context, pollEvery time.Duration) (out []byte, lead *Lead, err error) {
	f, err := t.q.openLeader()
	if err != nil {
		return nil, nil, err
	}
	var (
		mu   sync.Mutex
		done bool
	)
	leads := make(chan *Lead, 1)
	go func() {
		err := flock(f, unix.LOCK_EX)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || done {
			f.Close()
			return
		}
		leads <- &Lead{q: t.q, f: f}
	}()
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
		select {
		case l := <-leads:
			l.Release()
		default:
		}
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if out, err := t.Outcome(); err != nil || out != nil {
			stop()
			return out, nil, err
		}
		select {
		case l := <-leads:
			return nil, l, nil
		case <-ctx.Done():
			stop()
			return nil, nil, &BusyError{Path: filepath.Join(t.q.Dir, queueLeader), Err: ctx.Err()}
		case <-tick.C:
		}
	}
}

// Request is a request a leader found.
type Request struct {
	ID      string
	Payload []byte
	path    string // ID.req or ID.run
}

// Pending returns the requests to serve: those posted and not taken, and
// those a leader before took without answering (it died). It removes, on
// the way, what callers that died left: outcomes nobody fetched and posts
// that never finished, older than a minute.
func (l *Lead) Pending() ([]Request, error) {
	des, err := os.ReadDir(l.q.Dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	answered := map[string]bool{}
	for _, de := range des {
		if id, ok := strings.CutSuffix(de.Name(), queueOut); ok {
			answered[id] = true
		}
	}
	var out []Request
	now := time.Now()
	for _, de := range des {
		n := de.Name()
		path := filepath.Join(l.q.Dir, n)
		if strings.HasSuffix(n, queueOut) || strings.HasPrefix(n, ".") {
			if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > queueStale {
				os.Remove(path)
			}
			continue
		}
		id, ok := strings.CutSuffix(n, queueReq)
		if !ok {
			id, ok = strings.CutSuffix(n, queueRun)
		}
		if !ok || answered[id] || !de.Type().IsRegular() {
			continue
		}
		b, err := readRegular(path, maxRecordSize)
		if err != nil {
			continue // taken back meanwhile
		}
		out = append(out, Request{ID: id, Payload: b, path: path})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Take claims a pending request for this leader. It reports false, and
// removes the request, when its poster is gone (nobody waits for it), or
// false alone when the poster took it back.
func (l *Lead) Take(r *Request) (bool, error) {
	f, err := openRegular(r.path, unix.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		os.Remove(r.path) // the poster is gone
		return false, nil
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return false, fmt.Errorf("queue: lock %s: %w", r.path, err)
	}
	if strings.HasSuffix(r.path, queueRun) {
		return true, nil
	}
	run := filepath.Join(l.q.Dir, r.ID+queueRun)
	if err := os.Rename(r.path, run); errors.Is(err, fs.ErrNotExist) {
		return false, nil // taken back
	} else if err != nil {
		return false, fmt.Errorf("queue: %w", err)
	}
	r.path = run
	return true, nil
}

// Answer writes the outcome of a request taken, for its poster.
func (l *Lead) Answer(r Request, outcome []byte) error {
	if err := writeAtomic(filepath.Join(l.q.Dir, r.ID+queueOut), outcome, false); err != nil {
		return err
	}
	return l.Done(r)
}

// Done removes a request taken, once its poster has its outcome (or is
// the leader itself).
func (l *Lead) Done(r Request) error {
	if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}
