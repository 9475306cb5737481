package modeltest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// opKind is what one step of a sequence does.
type opKind int

const (
	opAdd opKind = iota
	opDel
	opCheck
	opGC
	opTruncate      // cut an attachment's record short
	opRemoveRecord  // delete an attachment's record
	opForeignAdd    // another client adds a rule (pesto -A)
	opForeignRemove // another client removes one of its rules (pesto -D)
	opRestart       // the forwarder restarts with empty tables
	opHold          // another process takes a mapping's port
	opFree          // and lets it go
	opPar           // ADD and DEL of distinct attachments and another client's update, at the same time
)

// op is one step. Fields that its kind does not use are zero.
type op struct {
	kind    opKind
	att     int    // attachment
	variant int    // ADD: which mappings
	stopAt  int    // ADD, DEL, GC: stop at the plugin's stopAt-th step (0: never)
	keep    int    // opTruncate: percent of the record's bytes kept
	foreign int    // opForeignAdd, opForeignRemove: which candidate rule
	network int    // opGC
	valid   uint16 // opGC: bit i set when attachment i stays valid
	par     []op   // opPar: what runs at the same time
	hold    bool   // opPar: the port of par[0] (an ADD) is taken first
}

func (o op) String() string {
	stop := ""
	if o.stopAt > 0 {
		stop = fmt.Sprintf(" stopped at step %d", o.stopAt)
	}
	switch o.kind {
	case opAdd:
		return fmt.Sprintf("ADD a%d mappings %d%s", o.att, o.variant, stop)
	case opDel:
		return fmt.Sprintf("DEL a%d%s", o.att, stop)
	case opCheck:
		return fmt.Sprintf("CHECK a%d", o.att)
	case opGC:
		var valid []string
		for i := 0; i < modelAtts; i++ {
			if i%2 == o.network && o.valid&(1<<i) != 0 {
				valid = append(valid, fmt.Sprintf("a%d", i))
			}
		}
		return fmt.Sprintf("GC network %d valid [%s]%s", o.network, strings.Join(valid, " "), stop)
	case opTruncate:
		return fmt.Sprintf("truncate record%s of a%d to %d%%", both(o), o.att, o.keep)
	case opRemoveRecord:
		return fmt.Sprintf("remove record%s of a%d", both(o), o.att)
	case opForeignAdd:
		return fmt.Sprintf("foreign add #%d", o.foreign)
	case opForeignRemove:
		return fmt.Sprintf("foreign remove #%d", o.foreign)
	case opRestart:
		return "restart the forwarder empty"
	case opHold:
		return fmt.Sprintf("another process takes the port of a%d mappings %d", o.att, o.variant)
	case opFree:
		return fmt.Sprintf("another process frees the port of a%d mappings %d", o.att, o.variant)
	case opPar:
		parts := make([]string, len(o.par))
		for i, x := range o.par {
			parts[i] = x.String()
		}
		held := ""
		if o.hold {
			held = " (the port of the first taken before)"
		}
		return "together" + held + ": " + strings.Join(parts, " | ")
	}
	return fmt.Sprintf("op %d", int(o.kind))
}

// both names the files of a record op.
func both(o op) string {
	return [...]string{" file", " backup copy", " file and backup copy"}[o.variant%3]
}

// kindNames name the kinds for PPMODEL_EXCLUDE.
var kindNames = map[string]opKind{
	"add": opAdd, "del": opDel, "check": opCheck, "gc": opGC, "truncate": opTruncate,
	"remove": opRemoveRecord, "foreign-add": opForeignAdd, "foreign-remove": opForeignRemove, "restart": opRestart,
	"hold": opHold, "free": opFree, "par": opPar,
}

// excluded drops the kinds PPMODEL_EXCLUDE names (comma-separated, see
// kindNames) from ops, and "stop" drops the stops: to look past a known
// failure for others.
func excluded(t *testing.T, ops []op) []op {
	ex := os.Getenv("PPMODEL_EXCLUDE")
	if ex == "" {
		return ops
	}
	drop := map[opKind]bool{}
	noStop := false
	for _, name := range strings.Split(ex, ",") {
		if name == "stop" {
			noStop = true
			continue
		}
		k, ok := kindNames[name]
		if !ok {
			t.Fatalf("PPMODEL_EXCLUDE: unknown kind %q", name)
		}
		drop[k] = true
	}
	var out []op
	for _, o := range ops {
		if noStop {
			o.stopAt = 0
		}
		if !drop[o.kind] {
			out = append(out, o)
		}
	}
	return out
}

// genOps draws n operations from seed.
func genOps(seed uint64, n int) []op {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ops := make([]op, n)
	stop := func() int {
		if rng.IntN(100) < 30 {
			return 1 + rng.IntN(6)
		}
		return 0
	}
	for i := range ops {
		o := op{att: rng.IntN(modelAtts)}
		switch x := rng.IntN(100); {
		case x < 9:
			// ADDs at the same time share batches (one leads, the
			// others wait): any of them may be stopped, leader or
			// waiter, and the port of the first may be taken, so that
			// its rule fails while the others' succeed.
			o.kind = opPar
			for _, a := range rng.Perm(modelAtts)[:2+rng.IntN(4)] {
				x := op{kind: opAdd, att: a, variant: rng.IntN(modelVariants)}
				if rng.IntN(4) == 0 {
					x = op{kind: opDel, att: a}
				}
				if rng.IntN(4) == 0 {
					x.stopAt = 1 + rng.IntN(7)
				}
				o.par = append(o.par, x)
			}
			o.hold = o.par[0].kind == opAdd && rng.IntN(4) == 0
			if rng.IntN(2) == 0 { // a rule on a pool port: no attachment's
				kind := []opKind{opForeignAdd, opForeignRemove}[rng.IntN(2)]
				o.par = append(o.par, op{kind: kind, foreign: rng.IntN(modelPool)})
			}
		case x < 32:
			o.kind, o.variant, o.stopAt = opAdd, rng.IntN(modelVariants), stop()
		case x < 48:
			o.kind, o.stopAt = opDel, stop()
		case x < 63:
			o.kind = opCheck
		case x < 68:
			o.kind, o.network, o.valid, o.stopAt = opGC, rng.IntN(2), uint16(rng.IntN(1<<modelAtts)), stop()
		case x < 74:
			o.kind, o.keep, o.variant = opTruncate, rng.IntN(95), rng.IntN(3)
		case x < 77:
			o.kind, o.variant = opRemoveRecord, rng.IntN(3)
		case x < 88:
			o.kind, o.foreign = opForeignAdd, rng.IntN(foreignCandidates)
		case x < 95:
			o.kind, o.foreign = opForeignRemove, rng.IntN(foreignCandidates)
		case x < 97:
			o.kind, o.variant = opHold, rng.IntN(modelVariants)
		case x < 99:
			o.kind, o.variant = opFree, rng.IntN(modelVariants)
		default:
			o.kind = opRestart
		}
		ops[i] = o
	}
	return ops
}

// Seeds returns the seeds to run: fixed ones, or PPMODEL_SEED, plus
// PPMODEL_SEEDS more drawn from the clock.
func Seeds(t *testing.T, fixed []uint64) []uint64 {
	if s := os.Getenv("PPMODEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PPMODEL_SEED=%q: %v", s, err)
		}
		return []uint64{v}
	}
	seeds := append([]uint64(nil), fixed...)
	if s := os.Getenv("PPMODEL_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("PPMODEL_SEEDS=%q: %v", s, err)
		}
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		for i := 0; i < n; i++ {
			seeds = append(seeds, rng.Uint64()>>1)
		}
	}
	return seeds
}

// Steps is the number of operations per seed: PPMODEL_STEPS, or def.
func Steps(t *testing.T, def int) int {
	if s := os.Getenv("PPMODEL_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("PPMODEL_STEPS=%q: want a positive number", s)
		}
		return n
	}
	return def
}
