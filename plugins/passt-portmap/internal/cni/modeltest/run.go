package modeltest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/cni"
)

// run applies ops in order, checking the promises after each, and
// returns the index of the op after which one broke and why (-1, nil
// when all held). It stops at a setup error of the world itself.
func (m *Model) run(ops []op) (int, error) {
	for i, o := range ops {
		m.trace = append(m.trace, fmt.Sprintf("%3d %s", i, o))
		if err := m.apply(o); err != nil {
			return i, err
		}
		if err := m.invariants(); err != nil {
			return i, err
		}
		for _, att := range touched(o) {
			if err := m.checkAgrees(att); err != nil {
				return i, err
			}
		}
	}
	return -1, nil
}

// touched lists the attachments whose state o may have changed, for
// CHECK after it.
func touched(o op) []int {
	switch o.kind {
	case opAdd, opDel, opTruncate, opRemoveRecord, opHold:
		return []int{o.att}
	case opGC:
		var out []int
		for i := o.network; i < modelAtts; i += 2 {
			out = append(out, i)
		}
		return out
	case opPar:
		var out []int
		for _, x := range o.par {
			if x.kind == opAdd || x.kind == opDel {
				out = append(out, x.att)
			}
		}
		return out
	}
	return nil
}

// apply runs one step, a verb of the plugin or a fault done to the world,
// checks what a verb promises on its own, and notes in m what the step
// changed.
func (m *Model) apply(o op) error {
	switch o.kind {
	case opAdd:
		m.variant[o.att] = o.variant
		canWork, why := m.addCanWork(o.att, o.variant)
		stamp := m.stamp(o.att)
		stopped, err := m.verb("ADD", o.att, m.conf(o.att, nil), o.stopAt)
		m.settle(o.att, stopped, err)
		m.rewritten(o.att, stamp)
		if o.stopAt == 0 || stopped == "" {
			if err := mustWork("ADD", o.att, err, canWork, why); err != nil {
				return err
			}
		}
		if err == nil && stopped == "" {
			// Success means every rule of the attachment listens.
			if ok, why := m.checkExpected(o.att); !ok {
				return fmt.Errorf("ADD of a%d succeeded, but %s", o.att, why)
			}
		}
	case opDel:
		canWork := m.readable(o.att)
		stopped, err := m.verb("DEL", o.att, m.conf(o.att, nil), o.stopAt)
		m.settle(o.att, stopped, err)
		if o.stopAt == 0 || stopped == "" {
			if err := mustWork("DEL", o.att, err, canWork, "its record readable"); err != nil {
				return err
			}
		}
		if err == nil && stopped == "" {
			return m.released(o.att, "DEL")
		}
	case opCheck:
		return m.checkAgrees(o.att)
	case opGC:
		var valid []map[string]string
		for i := 0; i < modelAtts; i++ {
			if o.valid&(1<<i) != 0 {
				valid = append(valid, map[string]string{"containerID": modelKey(i).ContainerID, "ifname": "eth0"})
			}
		}
		att := o.network // any attachment of the network names its config
		canWork := true
		for i := o.network; i < modelAtts; i += 2 {
			if o.valid&(1<<i) == 0 && !m.readable(i) {
				canWork = false
			}
		}
		stopped, err := m.verb("GC", att, m.conf(att, map[string]any{"cni.dev/valid-attachments": valid}), o.stopAt)
		if o.stopAt == 0 || stopped == "" {
			if err := mustWork("GC", att, err, canWork, "the records of its stale attachments readable"); err != nil {
				return err
			}
		}
		for i := o.network; i < modelAtts; i += 2 {
			if o.valid&(1<<i) == 0 {
				m.settle(i, stopped, err)
			}
		}
		if err == nil && stopped == "" {
			for i := o.network; i < modelAtts; i += 2 {
				if o.valid&(1<<i) == 0 {
					if err := m.released(i, "GC"); err != nil {
						return err
					}
				}
			}
		}
	case opTruncate:
		claims, err := m.liveClaims(o.att)
		if err != nil {
			return err
		}
		k := modelKey(o.att)
		for _, path := range m.recordFiles(k, o) {
			b, err := os.ReadFile(path)
			if err != nil {
				continue // no such file: nothing to damage
			}
			if err := os.WriteFile(path, b[:len(b)*o.keep/100], 0o640); err != nil {
				return fmt.Errorf("truncate %s: %w", path, err)
			}
		}
		m.damaged1(o.att, claims)
	case opRemoveRecord:
		claims, err := m.liveClaims(o.att)
		if err != nil {
			return err
		}
		k := modelKey(o.att)
		for _, path := range m.recordFiles(k, o) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", path, err)
			}
		}
		m.damaged1(o.att, claims)
	case opForeignAdd:
		r := m.foreignRule(o.foreign)
		if att, copied := m.copyOf(o.foreign); copied && m.doubt[att] {
			// The attachment's plugin was stopped (killed) after it may
			// have sent this very rule, or its removal: a byte-equal copy
			// added now cannot be told from the attachment's own by any
			// client, since a rule has no other identity. Not done.
			m.trace = append(m.trace, "    skipped: a copy of a rule in doubt")
			return nil
		}
		if m.fwd.foreignAdd(r) {
			m.foreign[r.Key()] = r
			m.trace = append(m.trace, "    added "+r.String())
		}
	case opForeignRemove:
		r := m.foreignRule(o.foreign)
		if _, ok := m.foreign[r.Key()]; ok {
			m.fwd.foreignRemove(r)
			delete(m.foreign, r.Key())
		}
	case opPar:
		return m.together(o.par, o.hold)
	case opHold:
		r, err := m.rule(o.att, o.variant)
		if err != nil {
			return err
		}
		if m.fwd.hold(r) {
			m.held[r.First] = true
			m.trace = append(m.trace, "    held")
		}
	case opFree:
		if m.fwd.free(m.port(o.att, o.variant)) {
			delete(m.held, m.port(o.att, o.variant))
		}
	case opRestart:
		if err := m.fwd.restart(); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		clear(m.foreign)
		clear(m.orphaned)
		m.doubt = [modelAtts]bool{} // the rules in doubt went with the forwarder
		m.gen++
		for att, d := range m.damaged {
			d.claims = nil // they went with the forwarder too
			m.damaged[att] = d
		}
	}
	return nil
}

// errStopped is what the StopAt hook returns: the verb ends there.
var errStopped = errors.New("stopped by the model test's hook")

// verb runs a verb in-process as skel would, stopping it at its stopAt-th
// step when stopAt > 0. It returns the step it stopped at ("" when it ran
// to the end) and the verb's error.
func (m *Model) verb(name string, att int, conf []byte, stopAt int) (stopped string, err error) {
	var stderr bytes.Buffer
	var trace []string
	steps := 0
	p := &cni.Plugin{Stdout: &bytes.Buffer{}, Stderr: &stderr, Client: m.fwd.client()}
	if stopAt > 0 {
		p.StopAt = func(step string) error {
			steps++
			if steps == stopAt {
				stopped = step
				trace = append(trace, "    stopped at "+step)
				return errStopped
			}
			return nil
		}
	}
	k := modelKey(att)
	args := &skel.CmdArgs{ContainerID: k.ContainerID, IfName: k.IfName, Netns: "/var/run/netns/" + k.ContainerID, Path: "/opt/cni/bin", StdinData: conf}
	fn := map[string]func(*skel.CmdArgs) error{"ADD": p.Add, "DEL": p.Del, "CHECK": p.Check, "GC": p.GC}[name]
	err = fn(args)
	outcome := "ok"
	var te *types.Error
	switch {
	case stopped != "":
		outcome = "stopped"
	case errors.As(err, &te):
		outcome = fmt.Sprintf("code %d", te.Code)
	case err != nil:
		outcome = "error"
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		trace = append(trace, "    stderr: "+strings.ReplaceAll(s, "\n", "\n    stderr: "))
	}
	if err != nil {
		trace = append(trace, fmt.Sprintf("    %s a%d -> %v", name, att, err))
	} else {
		trace = append(trace, fmt.Sprintf("    %s a%d -> ok", name, att))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stats == nil {
		m.stats = map[string]int{}
	}
	m.stats[name+" "+outcome]++
	m.trace = append(m.trace, trace...)
	return stopped, err
}

// Stats counts the outcomes of the verbs by verb ("ADD ok", "DEL code
// 11", "ADD stopped"...), for the test's log.
type Stats map[string]int

func (s Stats) add(counts map[string]int) {
	for k, n := range counts {
		s[k] += n
	}
}

// String renders the counts sorted by name.
func (s Stats) String() string {
	keys := slices.Sorted(maps.Keys(s))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, s[k])
	}
	return strings.Join(parts, ", ")
}
