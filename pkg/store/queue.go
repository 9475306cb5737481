package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// A Queue is where calls of separate processes that need the same
// resource meet, with no daemon: one of them, the leader, does the work
// of all that are waiting, and each learns its own outcome. pkg/attach
// uses one per forwarder, so that the ADDs of a burst share one
// transaction. All of it is files in one directory, dataDir/queue/NAME,
// reached and used through package safefs like every file of the store
// (directories walked from dataDir without following a link and checked,
// regular files of the plugin's own with one link, opened without
// blocking, renames that replace nothing, removals of the name):
//
//	DIR/leader        flock'ed exclusively by the leader
//	DIR/ID.req        a request, written whole (temporary file, rename);
//	                  its poster holds it open with a shared flock while
//	                  it waits
//	DIR/ID.run        a request a leader took (renamed from ID.req)
//
// The leader answers by appending the answer to the request's file,
// framed and checksummed like an intent, and then removes the file: the
// poster reads it through the descriptor it holds, woken by inotify
// (or, where it has no inotify instance left, by a slow poll). A poster
// that dies releases its flock: a leader then drops its request (nobody
// waits for it, and the runtime that ran it will call DEL). A leader that
// dies releases the leader lock: the next leader takes the requests it
// had taken (ID.run) again. Payloads are the caller's.
type Queue struct {
	d *safefs.Dir
}

// Queue file names.
const (
	queueLeader = "leader"
	queueReq    = ".req"
	queueRun    = ".run"
	queueTmp    = ".tmp-"
	// queueStale is the age past which a leader removes temporary files
	// of posts that never finished.
	queueStale = time.Minute
	// answerMagic starts an answer's frame (see encodeFrame).
	answerMagic = "ppanswer"
	// QueuesName is the directory of the queues in the data directory.
	QueuesName = "queue"
)

// OpenQueue opens the queue name under dataDir (dataDir/queue/name),
// making the directories it lacks, each checked (see safefs). Close
// releases it, once the tickets, leads and requests of it are done.
func OpenQueue(dataDir, name string) (*Queue, error) {
	root, err := safefs.Ensure(dataDir, dirMode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	defer root.Close()
	qs, err := root.Sub(QueuesName, true, dirMode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	defer qs.Close()
	d, err := qs.Sub(name, true, dirMode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Queue{d: d}, nil
}

// Dir is the queue's directory, for messages.
func (q *Queue) Dir() string { return q.d.Path() }

// Close releases the queue's directory.
func (q *Queue) Close() error { return q.d.Close() }

// Lead is the held leader lock of a queue.
type Lead struct {
	q *Queue
	f *os.File
}

func (q *Queue) openLeader() (*os.File, error) {
	f, err := q.d.OpenFile(queueLeader, unix.O_RDWR|unix.O_CREAT, fileMode)
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
	n  int64    // the request's length: its answer follows
	// looked counts the times Await looked for the answer (for tests:
	// a poster with inotify looks only when its file was written).
	looked int
}

// Post writes a request with payload, and holds it as its poster.
func (q *Queue) Post(payload []byte) (*Ticket, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	id := hex.EncodeToString(b[:])
	tmp := queueTmp + id
	f, err := q.d.OpenFile(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	fail := func(err error) (*Ticket, error) {
		f.Close()
		q.d.Remove(tmp)
		return nil, fmt.Errorf("queue: post %s: %w", id, err)
	}
	if err := flock(f, unix.LOCK_SH); err != nil {
		return fail(err)
	}
	if _, err := f.Write(payload); err != nil {
		return fail(err)
	}
	if err := q.d.Rename(tmp, id+queueReq); err != nil {
		return fail(err)
	}
	return &Ticket{q: q, ID: id, f: f, n: int64(len(payload))}, nil
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
	err := t.q.d.Remove(t.ID + queueReq)
	if missing(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: %w", err)
	}
	t.Close()
	return true, nil
}

// Answer returns the request's answer, nil when there is none yet.
func (t *Ticket) Answer() ([]byte, error) {
	if t.f == nil {
		return nil, errors.New("queue: answer of a closed ticket")
	}
	b, err := io.ReadAll(io.NewSectionReader(t.f, t.n, maxRecordSize+int64(intentHeader)))
	if err != nil {
		return nil, fmt.Errorf("queue: read answer %s: %w", t.ID, err)
	}
	payload, err := decodeFrame(answerMagic, b)
	if err != nil || payload == nil {
		return nil, nil // none yet, or being written
	}
	return payload, nil
}

// Await waits for the request's answer or for the lead, whichever comes
// first, until ctx ends. It returns the answer (lead nil) or the lead
// (answer nil); the leader must serve the request itself when it is
// still pending. Both are waited for without spinning: the lead by a
// blocking flock, which returns as soon as the leader before lets go;
// the answer by inotify on the request's file (or, where the process
// has no inotify instance left, by looking every slowPoll), so that a
// leader answers its waiters without giving up the lead.
func (t *Ticket) Await(ctx context.Context, slowPoll time.Duration) (answer []byte, lead *Lead, err error) {
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
	// Only a poster without inotify polls: a few dozen posters waking
	// every few milliseconds keep the CPUs busy enough to starve the
	// forwarder their leader waits for.
	written, closeWatch, watching := t.watch()
	defer closeWatch()
	var poll <-chan time.Time
	if !watching {
		tick := time.NewTicker(slowPoll)
		defer tick.Stop()
		poll = tick.C
	}
	for {
		t.looked++
		if ans, err := t.Answer(); err != nil || ans != nil {
			stop()
			return ans, nil, err
		}
		select {
		case l := <-leads:
			return nil, l, nil
		case <-ctx.Done():
			stop()
			return nil, nil, &BusyError{Path: t.q.d.Join(queueLeader), Err: ctx.Err()}
		case <-written:
		case <-poll:
		}
	}
}

// watch returns a channel that receives when the request's file is
// written to (inotify), a function that stops watching, and whether it
// watches: without inotify (no instance left) the channel never receives.
func (t *Ticket) watch() (<-chan struct{}, func(), bool) {
	ch := make(chan struct{}, 1)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return ch, func() {}, false
	}
	if _, err := unix.InotifyAddWatch(fd, fmt.Sprintf("/proc/self/fd/%d", t.f.Fd()), unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return ch, func() {}, false
	}
	in := os.NewFile(uintptr(fd), "inotify") // non-blocking: Close ends a Read
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := in.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { in.Close() }, true
}

// Request is a request a leader found.
type Request struct {
	ID      string
	Payload []byte
	name    string   // ID.req or ID.run
	f       *os.File // open while taken
}

// Pending returns the requests to serve: those posted and not taken, and
// those a leader before took without answering (it died). It removes, on
// the way, what callers that died left: outcomes nobody fetched and posts
// that never finished, older than a minute.
func (l *Lead) Pending() ([]Request, error) {
	d := l.q.d
	names, err := d.Names()
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var out []Request
	now := time.Now()
	for _, n := range names {
		st, err := d.Lstat(n)
		if err != nil {
			continue // gone meanwhile
		}
		regular := st.Mode&unix.S_IFMT == unix.S_IFREG
		if strings.HasPrefix(n, ".") {
			if regular && now.Sub(time.Unix(st.Mtim.Unix())) > queueStale {
				d.Remove(n)
			}
			continue
		}
		id, ok := strings.CutSuffix(n, queueReq)
		if !ok {
			id, ok = strings.CutSuffix(n, queueRun)
		}
		if !ok || !regular {
			continue
		}
		b, err := d.ReadFile(n, maxRecordSize)
		if err != nil {
			continue // taken back meanwhile, or not a file of ours
		}
		if answeredAt(b) >= 0 {
			continue // answered by a leader that died before removing it
		}
		out = append(out, Request{ID: id, Payload: b, name: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// answeredAt returns where the answer frame that ends a request's file b
// starts, or -1 when it has none.
func answeredAt(b []byte) int {
	for i := bytes.LastIndex(b, []byte(answerMagic)); i >= 0; i = bytes.LastIndex(b[:i], []byte(answerMagic)) {
		p, err := decodeFrame(answerMagic, b[i:])
		if err == nil && p != nil && i+intentHeader+len(p) == len(b) {
			return i
		}
	}
	return -1
}

// Take claims a pending request for this leader. It reports false, and
// removes the request, when its poster is gone (nobody waits for it), or
// false alone when the poster took it back. A request taken must be
// answered (Answer) or let go (Done).
func (l *Lead) Take(r *Request) (bool, error) {
	d := l.q.d
	f, err := d.OpenFile(r.name, unix.O_RDWR, 0)
	if missing(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: %w", err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		d.Remove(r.name) // the poster is gone
		f.Close()
		return false, nil
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return false, fmt.Errorf("queue: lock %s: %w", d.Join(r.name), err)
	}
	if !strings.HasSuffix(r.name, queueRun) {
		run := r.ID + queueRun
		if err := d.Rename(r.name, run); err != nil {
			f.Close()
			if missing(err) {
				return false, nil // taken back
			}
			return false, fmt.Errorf("queue: %w", err)
		}
		r.name = run
	}
	r.f = f
	return true, nil
}

// Answer appends the answer to a request taken, for its poster, and
// removes the request's file (the poster reads it through its own
// descriptor).
func (l *Lead) Answer(r Request, answer []byte) error {
	if r.f == nil {
		return errors.New("queue: answer to a request not taken")
	}
	if _, err := r.f.WriteAt(encodeFrame(answerMagic, answer), int64(len(r.Payload))); err != nil {
		return fmt.Errorf("queue: answer %s: %w", r.ID, err)
	}
	return l.Done(r)
}

// Close lets go of a request taken without answering it: it stays taken
// (ID.run), for the next leader.
func (r *Request) Close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// Done lets go of a request taken and removes it, once its poster has its
// answer (or is the leader itself).
func (l *Lead) Done(r Request) error {
	if r.f != nil {
		r.f.Close()
	}
	if err := l.q.d.Remove(r.name); err != nil && !missing(err) {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}
