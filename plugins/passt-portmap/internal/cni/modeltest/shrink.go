package modeltest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Run runs seed's sequence of steps in a world mk makes; on a broken
// promise it shrinks the sequence and fails the test with the seed and
// the shortest sequence found, with its trace. It adds the outcomes of
// the verbs to stats.
func Run(t *testing.T, mk World, seed uint64, steps int, shrinkBudget time.Duration, stats Stats) {
	t.Helper()
	ops := excluded(t, genOps(seed, steps))
	m := mk(t)
	at, err := m.run(ops)
	m.fwd.close()
	stats.add(m.stats)
	if err == nil {
		return
	}
	full := m.trace
	failing := ops[:at+1]
	small, runs := shrink(t, mk, failing, shrinkBudget)
	// Replay the shortest once more for its trace.
	m = mk(t)
	_, serr := m.run(small)
	m.fwd.close()
	trace := m.trace
	if serr == nil { // flaky under shrinking: show the whole run
		small, serr, trace = failing, err, full
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: after step %d of %d: %v\n", seed, at, len(ops), err)
	fmt.Fprintf(&b, "shortest sequence found (%d ops, %d shrink runs; rerun with PPMODEL_SEED=%d PPMODEL_STEPS=%d -run %s): %v\n", len(small), runs, seed, steps, t.Name(), serr)
	for i, o := range small {
		fmt.Fprintf(&b, "  %d. %s\n", i, o)
	}
	b.WriteString("its trace:\n" + strings.Join(trace, "\n"))
	t.Error(b.String())
}

// shrink returns the shortest sequence found within budget that still
// breaks a promise in a fresh world, from failing, which does, and how
// many runs it took.
func shrink(t *testing.T, mk World, failing []op, budget time.Duration) ([]op, int) {
	deadline := time.Now().Add(budget)
	runs := 0
	fails := func(seq []op) bool {
		if time.Now().After(deadline) {
			return false
		}
		runs++
		m := mk(t)
		defer m.fwd.close()
		_, err := m.run(seq)
		return err != nil
	}
	small := ddmin(failing, fails)
	// An op that fails as well without its stop, or with fewer calls at
	// the same time, is simpler.
	for i := range small {
		if small[i].stopAt > 0 {
			try := append([]op(nil), small...)
			try[i].stopAt = 0
			if fails(try) {
				small = try
			}
		}
		for j := 0; small[i].kind == opPar && j < len(small[i].par); {
			try := append([]op(nil), small...)
			try[i].par = append(append([]op(nil), small[i].par[:j]...), small[i].par[j+1:]...)
			if len(try[i].par) == 1 {
				try[i] = try[i].par[0]
			}
			if len(try[i].par) > 0 || try[i].kind != opPar {
				if fails(try) {
					small = try
					continue
				}
			}
			j++
		}
	}
	return small, runs
}

// ddmin is Zeller's delta debugging: a 1-minimal subsequence of ops for
// which fails still holds.
func ddmin(ops []op, fails func([]op) bool) []op {
	n := 2
	for len(ops) >= 2 {
		chunk := (len(ops) + n - 1) / n
		reduced := false
		for start := 0; start < len(ops); start += chunk {
			end := min(start+chunk, len(ops))
			rest := append(append([]op{}, ops[:start]...), ops[end:]...)
			if len(rest) > 0 && fails(rest) {
				ops, n, reduced = rest, max(n-1, 2), true
				break
			}
		}
		if !reduced {
			if n >= len(ops) {
				break
			}
			n = min(2*n, len(ops))
		}
	}
	return ops
}
