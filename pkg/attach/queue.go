package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Group commit: the ADDs of separate plugin processes on one forwarder
// share its transactions. Each ADD meets the others in a queue under
// dataDir (store.Queue, one per forwarder socket): the first to find no
// leader leads; an ADD that finds one posts its request and waits. The
// leader takes every request waiting (each under its attachment's record
// lock, which it takes without waiting: a request whose attachment a DEL
// or CHECK holds waits for the next leader), runs them all as one batch
// (batch.go: one transaction, one verification, each attachment's intent
// armed and record written as for an ADD alone), and answers each poster
// with its own outcome. It then lets go of the lead, and the next waiter
// that has no answer leads the requests posted meanwhile. There is no
// daemon: every leader is an ADD that would otherwise have waited for the
// forwarder.
//
// Faults: a poster that dies is not waited for (its request is dropped
// unless a leader took it already, then the ADD completes and the
// runtime's DEL, which waits for the record lock, removes it); a leader
// that dies leaves the requests it took for the next leader, with the
// intents it armed in their lock files (the next ADD of each adopts or
// removes what they claim); a poster whose wait times out takes its
// request back, or, when a leader has it, reports the timeout (code 11)
// while the leader finishes it under the record lock.

// queuePoll is how often a waiting ADD looks for its answer when it has
// no inotify instance (store.Ticket.Await); with one it does not poll.
const queuePoll = 20 * time.Millisecond

// queueName is the name of the queue of the forwarder at socket in
// dataDir/queue: a hash of its path, as a forwarder directory's is.
func queueName(socket string) string { return shortHash(socket) }

// request is what a waiting ADD hands to the leader.
type request struct {
	Key  Key        `json:"key"`
	Opts reqOptions `json:"options"`
	Maps []Mapping  `json:"mappings"`
}

// reqOptions are the Options of an attached ADD that its batch needs.
type reqOptions struct {
	DataDir       string        `json:"dataDir"`
	Socket        string        `json:"socket"`
	PIDFile       string        `json:"pidFile,omitempty"`
	Timeout       time.Duration `json:"timeout"`
	Weak          bool          `json:"weak,omitempty"`
	Verify        bool          `json:"verify"`
	TargetAddress netip.Addr    `json:"targetAddress,omitzero"`
	BindInterface string        `json:"bindInterface,omitempty"`
}

func requestOf(k Key, o *Options, ms []Mapping) request {
	return request{Key: k, Maps: ms, Opts: reqOptions{DataDir: o.DataDir, Socket: o.Socket, PIDFile: o.PIDFile,
		Timeout: o.Timeout, Weak: o.Weak, Verify: o.Verify, TargetAddress: o.TargetAddress, BindInterface: o.BindInterface}}
}

func (r *request) options() Options {
	return Options{DataDir: r.Opts.DataDir, Socket: r.Opts.Socket, PIDFile: r.Opts.PIDFile, Timeout: r.Opts.Timeout,
		Weak: r.Opts.Weak, Verify: r.Opts.Verify, TargetAddress: r.Opts.TargetAddress, BindInterface: r.Opts.BindInterface}
}

// answer is the leader's answer to one request: the result, or the error
// in words (Describe, with the names of settings and mappings left for
// the waiter's front end to fill in: see waitedError), and the warnings
// of the call. Kind is the number of its Kind.
type answer struct {
	Socket   string         `json:"socket,omitempty"`
	PIDFile  string         `json:"pidFile,omitempty"`
	Rules    []wire.PifRule `json:"rules,omitempty"`
	Err      *answerErr     `json:"error,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

type answerErr struct {
	Kind    Kind            `json:"kind"`
	Msg     string          `json:"msg"`
	Details string          `json:"details,omitempty"`
	Failed  []answerFailure `json:"failed,omitempty"`
}

type answerFailure struct {
	Rule      wire.PifRule  `json:"rule"`
	Ports     []uint16      `json:"ports,omitempty"`
	BlockedBy *wire.PifRule `json:"blockedBy,omitempty"`
}

func answerOf(res *Result, err error, warnings []string) answer {
	a := answer{Warnings: warnings}
	if err != nil {
		d := Describe(err, placeholders{})
		ae := &answerErr{Kind: d.Kind, Msg: d.Msg, Details: d.Details}
		for _, f := range d.Failed {
			ae.Failed = append(ae.Failed, answerFailure{Rule: f.PifRule, Ports: f.Ports, BlockedBy: f.BlockedBy})
		}
		a.Err = ae
		return a
	}
	a.Socket, a.PIDFile, a.Rules = res.Socket, res.PIDFile, res.Rules
	return a
}

// result turns an answer back into what Add returns.
func (a *answer) result() (*Result, error) {
	if a.Err != nil {
		e := &waitedError{Error{Kind: a.Err.Kind, Msg: a.Err.Msg, Details: a.Err.Details}}
		for _, f := range a.Err.Failed {
			e.e.Failed = append(e.e.Failed, ctlclient.RuleFailure{PifRule: f.Rule, Ports: f.Ports, BlockedBy: f.BlockedBy})
		}
		return nil, e
	}
	return &Result{Socket: a.Socket, PIDFile: a.PIDFile, Rules: a.Rules}, nil
}

// addQueued is the ADD of an attachment to a forwarder others may be
// writing to (see the comment at the top).
func (c *Core) addQueued(ctx context.Context, k Key, o Options, ms []Mapping) (*Result, error) {
	q, err := store.OpenQueue(o.DataDir, queueName(o.Socket))
	if err != nil {
		return nil, err
	}
	defer q.Close()
	own := requestOf(k, &o, ms)
	lead, err := q.TryLead()
	if err != nil {
		return nil, err
	}
	if lead != nil {
		return c.lead(ctx, lead, &own, "")
	}
	payload, err := json.Marshal(own)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	t, err := q.Post(payload)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if err := c.step("add: queued"); err != nil {
		return nil, err
	}
	wctx, cancel := o.step(ctx)
	out, lead, err := t.Await(wctx, queuePoll)
	cancel()
	if err != nil {
		if taken, _ := t.Withdraw(); !taken {
			err = fmt.Errorf("%w (a leader took this ADD and may still complete it: the runtime's DEL waits for it)", err)
		}
		return nil, err
	}
	if lead != nil {
		// The lead and the answer may come at once: an answered ADD is
		// not run again.
		if out, err = t.Answer(); err != nil || out == nil {
			return c.lead(ctx, lead, &own, t.ID)
		}
		lead.Release()
	}
	var a answer
	if err := json.Unmarshal(out, &a); err != nil {
		return nil, fmt.Errorf("queue: answer to %s: %w", t.ID, err)
	}
	for _, w := range a.Warnings {
		c.warnf("%s", w)
	}
	return a.result()
}

// served is a request in the leader's batch.
type served struct {
	req   store.Request
	own   bool
	job   *job
	warns []string
}

// lead runs, as the leader, own (the leader's own ADD, posted as ownID
// when it waited first) and every request waiting, in one batch.
func (c *Core) lead(ctx context.Context, l *store.Lead, own *request, ownID string) (*Result, error) {
	defer l.Release()
	// A leader stopped by the Step hook stands for one killed: it answers
	// no one, and leaves what it took to the next leader.
	var killed error
	step, hook := c.Step, c.Step
	if hook != nil {
		step = func(name string) error {
			if err := hook(name); err != nil {
				killed = err
				return err
			}
			return nil
		}
	}
	c = &Core{Warn: c.Warn, Client: c.Client, Step: step}
	o := own.options()
	var batch []*served
	// The leader's own ADD first, waiting for its record lock as an ADD
	// alone would.
	me := &served{own: true}
	comp, err := newCompiler(own.Maps, &o)
	if err != nil {
		return nil, err
	}
	j, err := c.openJob(ctx, own.Key, o, comp, len(own.Maps), nil, true)
	if err != nil {
		return nil, err
	}
	me.job = j
	batch = append(batch, me)
	defer func() {
		for _, s := range batch {
			if s.job != nil {
				s.job.lock.Drop()
				s.req.Close() // not answered: the next leader takes it again
			}
		}
	}()
	reqs, err := l.Pending()
	if err != nil {
		c.warnf("%v", err)
	}
	for i := range reqs {
		r := &reqs[i]
		if r.ID == ownID {
			if _, err := l.Take(r); err != nil {
				c.warnf("%v", err)
			}
			me.req = *r
			continue
		}
		s := c.take(ctx, l, r, &o, func() bool { return killed != nil })
		if killed != nil {
			return nil, killed
		}
		if s != nil {
			batch = append(batch, s)
		}
	}
	if err := c.step("add: batched"); err != nil {
		return nil, err
	}
	jobs := make([]*job, len(batch))
	bo := o
	for i, s := range batch {
		jobs[i] = s.job
		bo.Verify = bo.Verify || s.job.o.Verify
		if bo.PIDFile == "" {
			bo.PIDFile = s.job.o.PIDFile
		}
	}
	c.runBatch(ctx, &bo, o.Socket, bo.PIDFile, jobs)
	if killed != nil {
		return nil, killed
	}
	var ownRes *Result
	var ownErr error
	for _, s := range batch {
		res, err := s.job.complete()
		if killed != nil {
			return nil, killed
		}
		err = explainHolders(err)
		s.job.lock.Drop()
		s.job = nil
		if s.own {
			ownRes, ownErr = res, err
			if s.req.ID != "" { // it waited first, and was taken here
				if derr := l.Done(s.req); derr != nil {
					c.warnf("%v", derr)
				}
			}
			continue
		}
		c.reply(l, s.req, answerOf(res, err, s.warns))
	}
	return ownRes, ownErr
}

// reply hands a waiting ADD its answer; one that cannot be handed is
// the leader's warning, not its failure.
func (c *Core) reply(l *store.Lead, r store.Request, a answer) {
	b, err := json.Marshal(a)
	if err == nil {
		err = l.Answer(r, b)
	}
	if err != nil {
		c.warnf("answer to a waiting ADD (%s): %v", r.ID, err)
	}
}

// take prepares a waiting request for the batch: its attachment's record
// lock, taken without waiting (another call of it holds it: it waits for
// the next leader), and its record, read and checked as every record is
// (lockRecord); then the request itself (its poster may have gone, or
// taken it back). A request for another forwarder or data directory than
// the leader's (lo) is not served here.
func (c *Core) take(ctx context.Context, l *store.Lead, r *store.Request, lo *Options, killed func() bool) *served {
	var req request
	err := json.Unmarshal(r.Payload, &req)
	if err == nil && (req.Opts.Socket != lo.Socket || req.Opts.DataDir != lo.DataDir) {
		err = fmt.Errorf("it is for the forwarder at %s with data directory %s, the queue's is at %s with %s", req.Opts.Socket, req.Opts.DataDir, lo.Socket, lo.DataDir)
	}
	if err != nil {
		c.warnf("queue: request %s cannot be served here: %v", r.ID, err)
		return nil
	}
	s := &served{req: *r}
	jc := &Core{Client: c.Client, Step: c.Step, Warn: func(m string) { s.warns = append(s.warns, m) }}
	opts := req.options()
	comp, err := newCompiler(req.Maps, &opts)
	var j *job
	if err == nil {
		j, err = jc.openJob(ctx, req.Key, opts, comp, len(req.Maps), nil, false)
	}
	if errors.Is(err, errLockBusy) || killed() {
		return nil
	}
	if err == nil {
		if ok, terr := l.Take(r); !ok || terr != nil {
			j.lock.Drop()
			if terr != nil {
				c.warnf("%v", terr)
			}
			return nil
		}
		s.req = *r
		s.job = j
		return s
	}
	// Its ADD fails before any transaction: answer at once.
	if ok, terr := l.Take(r); ok && terr == nil {
		c.reply(l, *r, answerOf(nil, err, s.warns))
	}
	return nil
}
