package attach

import (
	"context"
	"errors"
	"slices"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// The ADD of one or more attachments on one forwarder, in one
// transaction (a batch: see queue.go for how the ADDs of several
// processes come together), and the ordering that keeps ownership exact
// when the process doing it is killed at any point:
//
//  1. Under each attachment's record lock, read what it claims (its
//     record, or the intent a killed call left, see store.Locked.Arm).
//  2. Connect, read every table: the forwarder now serves no other client
//     until this connection closes. Its identity (ctlclient.Identity) is
//     that of every connection of the update (guard): one that reaches
//     another forwarder ends the update before anything is sent to it.
//  3. For each attachment, in order: what it claims counts only if its
//     record names this forwarder (sameForwarder; a forwarder restarted
//     since, or one whose identity is unknown, then or now, holds none of
//     its rules: it claims nothing here, and a byte-equal rule is another
//     client's). Then plan its edits against the tables as the
//     attachments before it leave them (translate.Plan and the ownership
//     policy: a desired rule present and not claimed is another client's,
//     and refuses that attachment alone).
//  4. Arm each attachment's intent: the rules it is about to add, all
//     absent from the table, written as pending, with the forwarder's
//     identity, into its held lock file
//     by one pwrite, a copy into the page cache (no file made, renamed or
//     synced). This is the only thing done on the file system while the
//     forwarder is held, and it has to be done there: a rule it names
//     must be absent when it is named (else a killed ADD would leave
//     another client's rule, say pesto's, claimed, and its DEL would
//     remove it), and must stay absent until it is sent (else another
//     client could add the very same rule in between); only holding the
//     forwarder gives both.
//  5. Start writing each attachment's record as it will be if the update
//     succeeds (one fsync) beside the send, unless the attachment takes
//     rules out: those stay claimed until the forwarder has dropped them.
//  6. Send every table in one write, wait for the forwarder to switch,
//     and establish the outcome (ctlclient: from the listeners at once,
//     or on a fresh connection).
//  7. On success the records written are the final ones; on a failure,
//     each attachment's record is put back to what it claimed before (or
//     keeps the rules whose state is unknown, for DEL to remove).
//
// Killed after 4 and before 7, an attachment claims rules that may or may
// not be in the table, none of them another client's when claimed; its
// next ADD adopts those present and its DEL removes them. The one case no
// client can decide: killed there, and another client adding a rule
// byte for byte the same after the kill and before the next call.
//
// A batch of several attachments that fails as a whole (refused, or a
// rule that does not listen, which may block the rules after it) is
// rolled back as a whole by the client and then run again one
// attachment at a time, so that each gets its own outcome.

// job is one attachment's ADD in a batch.
type job struct {
	core  *Core // the call's own hooks and warnings
	k     Key
	o     Options
	comp  *compiler
	nmaps int
	lock  *store.Locked
	prev  *store.Record // its record before (nil: none)
	fw    *fwd
	// owned and claimed are what it owns and claims at fw before the
	// update (see leaveOld); next is the record it leaves on success.
	owned, claimed []wire.PifRule
	next           *store.Record

	// Set while planning, inside the transaction.
	id       ctlclient.Identity // the forwarder the update reached
	rules    translate.Compiled
	adding   []wire.PifRule // rules it adds, absent from the table
	removing bool           // it takes claimed rules out
	armed    bool           // its intent is in its lock file
	writing  chan error     // the record written beside the send
	written  *store.Record  // what that write stores

	err error // its outcome
}

// transacting says whether the job needs the forwarder: it has mappings,
// or rules to give up.
func (j *job) transacting() bool { return j.nmaps > 0 || len(j.claimed) > 0 }

// before is the record of the attachment should nothing happen: what it
// owns, and the rest of what it claims as pending.
func (j *job) before() store.Record {
	b := *j.next
	b.Rules = j.owned
	b.Pending = wire.Minus(j.claimed, j.owned)
	return b
}

// desired are the host rules of its mappings, as compiled for the
// forwarder.
func (j *job) desired() []wire.PifRule { return wire.RulesIn(wire.PifHost, j.rules.Rules) }

// judge lets go of the job's claims when the forwarder the update reached
// (id) is not the one they went to: they went with that one, and none of
// them can be proved the attachment's here.
func (j *job) judge(id ctlclient.Identity) {
	j.id = id
	if len(j.claimed) == 0 {
		return
	}
	if same, why := sameForwarder(j.prev, j.fw.socket, id); !same {
		j.core.warnf("%s; a byte-equal rule there now is another client's", why)
		j.owned, j.claimed = nil, nil
		j.next = j.fw.record(j.k, nil)
	}
}

// plan decides the job's edits against work, the tables as the jobs
// before it in the batch leave them.
func (j *job) plan(work wire.Tables) ([]wire.Edit, error) {
	j.rules, j.adding, j.removing = translate.Compiled{}, nil, false
	host := work.Lookup(wire.PifHost)
	if host != nil {
		var err error
		if j.rules, err = j.comp.compile(host.Caps); err != nil {
			return nil, err
		}
	}
	edits, err := planEdits(work, j.claimed, j.rules.Rules)
	if err != nil {
		return nil, j.comp.attribute(j.rules.Attribute(err))
	}
	for _, r := range edits[0].Add {
		if !host.Contains(r) {
			j.adding = append(j.adding, wire.PifRule{Pif: wire.PifHost, Rule: r})
		}
	}
	for _, e := range edits {
		t := work.Lookup(e.Pif)
		for _, r := range e.Remove {
			j.removing = j.removing || t != nil && t.Contains(r)
		}
	}
	return edits, nil
}

// arm writes the job's intent: the rules it adds that it does not claim
// yet, as pending, over the record it had.
func (j *job) arm() error {
	extra := wire.Minus(j.adding, j.claimed)
	if len(extra) == 0 {
		return nil
	}
	ahead := j.before()
	ahead.Pending = append(append([]wire.PifRule(nil), ahead.Pending...), extra...)
	ahead.Identity = storeIdentity(j.id)
	ahead.Intent = j.lock.NextIntent()
	if err := j.lock.Arm(&ahead); err != nil {
		return err
	}
	j.armed = true
	return nil
}

// writeAhead starts writing, on w, the record the job leaves if the
// update succeeds, unless that record would drop rules that stay in the
// table until the forwarder switches (the job takes rules out), or there
// is nothing new to write.
func (j *job) writeAhead(w *writer) {
	if j.removing {
		return
	}
	rec := *j.next
	rec.Rules, rec.Identity = j.desired(), storeIdentity(j.id)
	if sameRecord(j.prev, &rec) && j.lock.Damaged() == nil && !j.lock.FromIntent() && !j.armed {
		return
	}
	j.written = &rec
	j.writing = make(chan error, 1)
	lock, done := j.lock, j.writing
	w.do(func() { done <- lock.Write(&rec) })
}

// writers is how many record writes of a batch run at once. Each waits
// for its fsync; a few at once let the file system commit them together,
// while one goroutine (and thread) per job of a batch of 64 would stall
// the leader in thread creation and a storm of fsyncs.
const writers = 4

// writer runs the record writes of a batch on a few goroutines.
type writer struct {
	tasks chan func()
	n     int
}

func newWriter() *writer { return &writer{tasks: make(chan func(), 256)} }

// do runs fn on one of the writer's goroutines, starting one while fewer
// than writers run.
func (w *writer) do(fn func()) {
	if w.n < writers {
		w.n++
		go func() {
			for t := range w.tasks {
				t()
			}
		}()
	}
	w.tasks <- fn
}

// close lets the writer's goroutines end once their tasks are done.
func (w *writer) close() { close(w.tasks) }

// waitWrite waits for the record write started by writeAhead, if any.
func (j *job) waitWrite() error {
	if j.writing == nil {
		return nil
	}
	err := <-j.writing
	j.writing = nil
	if err != nil {
		j.written = nil
	}
	return err
}

// errBatchRefused is the planner's error when every job of a batch of
// several was refused before anything was sent (each has its own).
var errBatchRefused = errors.New("every attachment of the batch was refused")

// runBatch runs the ADD transaction of jobs (their forwarder is socket)
// and sets each job's outcome (job.err) and, on success, next.Rules.
// Records are written as described above; the caller finishes them.
func (c *Core) runBatch(ctx context.Context, o *Options, socket, pidFile string, jobs []*job) {
	var live []*job
	for _, j := range jobs {
		if j.err == nil && j.transacting() {
			live = append(live, j)
		}
	}
	if len(live) == 0 {
		return
	}
	var sent []*job // the jobs whose edits went into the update
	g := &guard{socket: socket}
	plan := func(tables wire.Tables) ([]wire.Edit, error) {
		sent = sent[:0]
		work := tables.Clone()
		var all []wire.Edit
		for _, j := range live {
			j.err, j.armed = nil, false
			j.judge(g.reached)
			edits, err := j.plan(work)
			if err == nil {
				err = j.arm()
			}
			if err != nil {
				j.err = atSocket(socket, err)
				continue
			}
			for _, e := range edits {
				if t := work.Lookup(e.Pif); t != nil {
					*t = t.Apply(e)
				}
			}
			all = append(all, edits...)
			sent = append(sent, j)
		}
		if len(sent) == 0 {
			if len(live) == 1 {
				return nil, live[0].err
			}
			return nil, errBatchRefused
		}
		if slices.ContainsFunc(sent, func(j *job) bool { return j.armed }) {
			if err := c.step("add: intent written"); err != nil {
				return nil, err
			}
		}
		w := newWriter()
		for _, j := range sent {
			j.writeAhead(w)
		}
		w.close()
		return all, nil
	}
	err := c.update(ctx, o, socket, pidFile, g, plan)
	var se *ctlclient.StatusError
	if errors.As(err, &se) && se.Result != nil && se.Result.Status == ctlclient.StatusSafeFail && len(sent) == 1 {
		err = annotateRefusal(sent[0], err)
	}
	err = atSocket(socket, err)
	switch {
	case err == nil:
		for _, j := range sent {
			j.next.Rules, j.next.Identity = j.desired(), storeIdentity(j.id)
		}
	case len(sent) > 1 && nothingChanged(err):
		// The batch was refused or rolled back as a whole: the tables are
		// as they were. One at a time, each gets its own outcome.
		for _, j := range sent {
			if werr := j.waitWrite(); werr != nil {
				c.warnf("%v", werr)
			}
			c.runBatch(ctx, o, socket, pidFile, []*job{j})
		}
		return
	default:
		for _, j := range sent {
			j.err = err
		}
	}
	for _, j := range sent {
		j.settle()
	}
	for _, j := range live {
		if slices.Contains(sent, j) {
			continue
		}
		if j.err == nil {
			// The planner never saw it (it did not run: no connection).
			j.err = err
		}
		if j.err != nil {
			j.settle()
		}
	}
}

// settle waits for the record written beside the send and, when the
// update failed, puts back what the job claimed before, or keeps the
// rules whose state is unknown claimed.
func (j *job) settle() {
	if werr := j.waitWrite(); werr != nil && j.err == nil {
		// The rules are in the table and the intent claims them: DEL
		// removes them.
		j.err = werr
	}
	err := j.err
	if err == nil {
		return
	}
	switch {
	case unknownState(err) != nil:
		// A rollback that failed leaves this update's rules in unknown
		// places: keep owning them so DEL removes them.
		j.next.Rules = wire.Union(j.claimed, intersect(unknownState(err), j.adding))
		j.next.Identity = storeIdentity(j.id)
		if werr := j.lock.Write(j.next); werr != nil {
			j.core.warnf("%v", werr)
		}
		j.written = j.next
	case (j.armed || j.prev == nil || j.written != nil) && nothingChanged(err):
		// The intent did not happen: record what was before it, even
		// when that is nothing. The DEL that a runtime sends after a
		// failed ADD then goes by a record that owns nothing, rather than
		// by the mappings, which may match a rule that another client
		// holds (the likely reason for the failure).
		b := j.before()
		b.Identity = storeIdentity(j.id)
		if werr := j.lock.Write(&b); werr != nil {
			j.core.warnf("%v", werr)
		}
		j.written = &b
	}
}

// intersect returns the rules of a that are in b.
func intersect(a, b []wire.PifRule) []wire.PifRule {
	return wire.Minus(a, wire.Minus(a, b))
}

// annotateRefusal names the mappings behind each rule of a job's update
// that the forwarder refused: it does not say which rule it refused.
func annotateRefusal(j *job, err error) error {
	var from []ruleFrom
	for _, r := range j.rules.Rules {
		if idx := j.comp.mappings(j.rules.Entries(r)); len(idx) > 0 {
			from = append(from, ruleFrom{Rule: wire.PifRule{Pif: wire.PifHost, Rule: r}, Entries: idx})
		}
	}
	if len(from) == 0 {
		return err
	}
	return &annotated{Err: err, From: from}
}
