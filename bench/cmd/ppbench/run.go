package main

import (
	"context"
	"fmt"
	"log"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Entry is one command measured in a case: a tool and the container it
// adds in run i.
type Entry struct {
	Tool Tool
	Ctr  func(run int) Container
}

// Result of one entry in one case.
type Result struct {
	Tool string  `json:"tool"`
	Add  *Series `json:"add"`
	Del  *Series `json:"del"`
	Note string  `json:"note,omitempty"`
}

// Checker tells whether a container's first mapping is in place.
type Checker func(ctx context.Context, t Tool, c Container) (bool, error)

// cycle measures ADD then DEL of every entry, run after run, the order of
// the entries rotating by one each run (two entries: A B, B A, A B, ...).
// An entry stops once it has used its time budget (after at least one
// run). A warm-up ADD and DEL of each entry comes first, with a check that
// the ADD put the mapping in place and the DEL took it away.
func cycle(ctx context.Context, entries []Entry, runs int, budget time.Duration, check Checker) ([]*Result, error) {
	res := make([]*Result, len(entries))
	used := make([]time.Duration, len(entries))
	dead := make([]bool, len(entries))
	for i, e := range entries {
		res[i] = &Result{Tool: e.Tool.Name(), Add: &Series{Tool: e.Tool.Name(), Op: "ADD"}, Del: &Series{Tool: e.Tool.Name(), Op: "DEL"}}
		if err := warmUp(ctx, e, check); err != nil {
			// One command that does not work must not cost the others
			// their figures: it is left out and the reason reported.
			dead[i] = true
			res[i].Note = "left out: " + err.Error()
			log.Printf("  %s", res[i].Note)
		}
	}
	// A budget counts from the warm-up: a tool whose one cycle already
	// passes it runs once.
	for i := range used {
		used[i] = 0
	}
	for run := 0; run < runs; run++ {
		active := 0
		for k := range entries {
			i := (k + run) % len(entries)
			if dead[i] || (run > 0 && used[i] >= budget) {
				continue
			}
			active++
			e := entries[i]
			c := e.Ctr(run)
			sm, err := e.Tool.Add(ctx, c)
			res[i].Add.add(sm, err)
			used[i] += sm.Wall
			if err != nil {
				log.Printf("%v", err)
			}
			sm, err = e.Tool.Del(ctx, c)
			res[i].Del.add(sm, err)
			used[i] += sm.Wall
			if err != nil {
				log.Printf("%v", err)
			}
			if res[i].Add.Failed+res[i].Del.Failed > 5 {
				return res, fmt.Errorf("%s: too many failures, last: %s %s", e.Tool.Name(), res[i].Add.LastErr, res[i].Del.LastErr)
			}
		}
		if active == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	for i := range res {
		if n := len(res[i].Add.Wall); n < runs && !dead[i] {
			res[i].Note = "stopped after " + strconv.Itoa(n) + " runs (time budget " + budget.String() + ")"
		}
	}
	return res, nil
}

// warmUp prepares e's configurations and runs one ADD and one DEL, checking
// that the ADD put the mapping in place and the DEL took it away.
func warmUp(ctx context.Context, e Entry, check Checker) error {
	c := e.Ctr(-1)
	if p, ok := e.Tool.(interface{ Prepare(Container) error }); ok {
		if err := p.Prepare(c); err != nil {
			return err
		}
		if err := p.Prepare(e.Ctr(0)); err != nil {
			return err
		}
	}
	if _, err := e.Tool.Add(ctx, c); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if check != nil {
		ok, err := check(ctx, e.Tool, c)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("warm-up: %s ADD of %s succeeded but port %d is not in place", e.Tool.Name(), c.ID, c.Maps[0].HostPort)
		}
	}
	if _, err := e.Tool.Del(ctx, c); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if check != nil {
		ok, err := check(ctx, e.Tool, c)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("warm-up: %s DEL of %s succeeded but port %d is still in place", e.Tool.Name(), c.ID, c.Maps[0].HostPort)
		}
	}
	return nil
}

// fixed returns a container maker: the same ID and mappings every run.
func fixed(id string, ms []portMapping) func(int) Container {
	return func(int) Container { return Container{ID: id, Maps: ms} }
}

// ConcResult is one burst of simultaneous calls.
type ConcResult struct {
	Tool      string        `json:"tool"`
	Op        string        `json:"op"`
	Calls     int           `json:"calls"`
	OK        int           `json:"ok"`
	Errors    []string      `json:"errors,omitempty"`
	Total     time.Duration `json:"total_ns"` // release of the barrier to the last exit
	Series    *Series       `json:"series"`
	InPlace   int           `json:"in_place"` // mappings found in place after the burst
	WantPlace int           `json:"want_in_place"`
}

// burst starts every call at once (as near as goroutines allow) and waits
// for all of them.
func burst(ctx context.Context, t Tool, op string, ctrs []Container) *ConcResult {
	r := &ConcResult{Tool: t.Name(), Op: op, Calls: len(ctrs), Series: &Series{Tool: t.Name(), Op: op}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	gate := make(chan struct{})
	for _, c := range ctrs {
		wg.Add(1)
		go func(c Container) {
			defer wg.Done()
			<-gate
			var sm Sample
			var err error
			if op == "ADD" {
				sm, err = t.Add(ctx, c)
			} else {
				sm, err = t.Del(ctx, c)
			}
			mu.Lock()
			defer mu.Unlock()
			r.Series.add(sm, err)
			if err != nil {
				r.Errors = append(r.Errors, err.Error())
			} else {
				r.OK++
			}
		}(c)
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	r.Total = time.Since(start)
	return r
}

// containers makes n containers with one mapping each, ports first,
// first+2, ...
func containers(prefix string, n, first int) []Container {
	out := make([]Container, n)
	for i := range out {
		out[i] = Container{ID: prefix + strconv.Itoa(i), Maps: maps(first+2*i, 1, 1)}
	}
	return out
}

func joinErrs(errs []string, n int) string {
	if len(errs) > n {
		errs = append(errs[:n:n], fmt.Sprintf("... and %d more", len(errs)-n))
	}
	return strings.Join(errs, "; ")
}
