package integration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// killWorld is what the kill tests share: a real pasta with a server on
// port 80 of its namespace, attachments mapping one TCP port each to it,
// and pesto's rule on the port after theirs, which no record may claim.
type killWorld struct {
	t       *testing.T
	r       *plugRun
	ctx     context.Context // bounds every call of the plugin
	atts    int
	prefix  string // of the attachments' container IDs
	reply   string // the server's
	p       uint16 // the first attachment's port
	foreign wire.Rule
	st      *store.Store
}

func newKillWorld(t *testing.T, atts int, prefix, reply string) *killWorld {
	r := newPlugRun(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", reply)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	k := &killWorld{t: t, r: r, ctx: ctx, atts: atts, prefix: prefix, reply: reply,
		p: pastatest.FreePortRange(t, "tcp", atts+1), st: store.New(filepath.Join(r.dataDir, "records"))}
	k.foreign = k.rule(atts)
	r.f.Pesto(t, "-A", "-t", fmt.Sprintf("%d:80", k.p+uint16(atts)))
	return k
}

func (k *killWorld) cid(a int) string { return fmt.Sprintf("%s%d", k.prefix, a) }

func (k *killWorld) conf(a int) []byte { return k.r.conf("", [2]uint16{k.p + uint16(a), 80}) }

// rule is the rule of attachment a's mapping (of a == atts: pesto's).
func (k *killWorld) rule(a int) wire.Rule {
	return wire.NewRule(wire.ProtoTCP, netip.Addr{}, k.p+uint16(a), k.p+uint16(a), 80, wire.FlagDualStack)
}

// command is the plugin binary's call of verb for attachment a.
func (k *killWorld) command(verb string, a int) *exec.Cmd {
	return k.r.command(k.ctx, verb, k.cid(a), k.conf(a))
}

// wait waits for cmd and reports whether SIGKILL ended it, and its
// error.
func (k *killWorld) wait(cmd *exec.Cmd) (killed bool, err error) {
	k.t.Helper()
	err = cmd.Wait()
	if k.ctx.Err() != nil {
		k.t.Fatalf("the plugin's calls ran past the test's deadline: %v", err)
	}
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled(), err
}

// hostRules reads pasta's HOST table. A read retries while pasta is
// busy: it may still be serving the connection of a plugin just killed.
func (k *killWorld) hostRules() *wire.Table {
	k.t.Helper()
	snap, err := ctlClient(k.r.f).Read(context.Background())
	if err != nil {
		k.t.Fatal(err)
	}
	return snap.Tables.Lookup(wire.PifHost)
}

func (k *killWorld) record(a int) (*store.Record, error) {
	return k.st.Get(store.Key{Network: "pp-real", ContainerID: k.cid(a), IfName: "eth0"})
}

// owned says whether attachment a's record owns its rule.
func (k *killWorld) owned(a int) bool {
	rec, err := k.record(a)
	if err != nil {
		return false
	}
	for _, o := range rec.Rules {
		if o.Rule.Equal(k.rule(a)) {
			return true
		}
	}
	return false
}

// check checks what holds after every call: pesto's rule is there and
// claimed by no record (not adopted), and every other rule in the table
// is claimed by exactly one record.
func (k *killWorld) check(step string) {
	k.t.Helper()
	host := k.hostRules()
	if !host.Contains(k.foreign) {
		k.t.Fatalf("%s: pesto's rule %s is gone: %v", step, k.foreign, host.Rules)
	}
	owners := map[[wire.RuleSize]byte]int{}
	for a := 0; a < k.atts; a++ {
		rec, err := k.record(a)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			k.t.Fatalf("%s: record of %s: %v", step, k.cid(a), err)
		}
		for _, o := range rec.Claimed() {
			owners[o.Rule.Key()]++
		}
	}
	if n := owners[k.foreign.Key()]; n != 0 {
		k.t.Fatalf("%s: pesto's rule %s is claimed by %d records: adopted", step, k.foreign, n)
	}
	for _, x := range host.Rules {
		if x.Equal(k.foreign) {
			continue
		}
		if n := owners[x.Key()]; n != 1 {
			k.t.Fatalf("%s: rule %s is claimed by %d records, want 1", step, x, n)
		}
	}
}

// finish runs the DEL of every attachment to the end: pesto's rule is
// left alone in the table, and it still answers.
func (k *killWorld) finish() {
	k.t.Helper()
	for a := 0; a < k.atts; a++ {
		k.r.must("DEL", k.cid(a), k.conf(a))
	}
	k.check("final DELs")
	if host := k.hostRules(); len(host.Rules) != 1 {
		k.t.Fatalf("after every DEL: %v, want pesto's rule alone", host.Rules)
	}
	pastatest.MustAnswer(k.t, "tcp", pastatest.HostPort("127.0.0.1", k.p+uint16(k.atts)), k.reply)
}

// TestPluginKilledAtRandom runs the plugin binary's ADD and DEL for four
// attachments on one real pasta and kills it with SIGKILL after a delay
// drawn from a fixed seed, so at any moment of its work (the delays are
// seeded; where they land is up to the machine). A rule pesto added stays
// through it all, claimed by no record; after every call each other rule
// in the table is claimed by exactly one record; a DEL that finished leaves no rule of its
// attachment, and an ADD that finished leaves its rule; DELs that run to
// the end leave only pesto's rule; and the run killed some calls and
// completed some.
func TestPluginKilledAtRandom(t *testing.T) {
	k := newKillWorld(t, 4, "pp-k", "k80")
	rng := rand.New(rand.NewPCG(7, 11))
	killed, completed := 0, 0
	for i := 0; i < 40; i++ {
		a := rng.IntN(k.atts)
		verb := "ADD"
		if rng.IntN(5) < 2 {
			verb = "DEL"
		}
		delay := time.Duration(rng.IntN(25000)) * time.Microsecond
		cmd := k.command(verb, a)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		wasKilled, err := k.wait(cmd)
		timer.Stop()
		step := fmt.Sprintf("%d: %s %s killed after %v", i, verb, k.cid(a), delay)
		switch {
		case wasKilled:
			killed++
		case err == nil:
			completed++
			step = fmt.Sprintf("%d: %s %s", i, verb, k.cid(a))
			if verb == "DEL" && k.hostRules().Contains(k.rule(a)) {
				t.Fatalf("%s: DEL succeeded and left %s", step, k.rule(a))
			}
			if verb == "ADD" && !k.hostRules().Contains(k.rule(a)) {
				t.Fatalf("%s: ADD succeeded and its rule %s is not in the table", step, k.rule(a))
			}
		default:
			step = fmt.Sprintf("%d: %s %s failed: %v", i, verb, k.cid(a), err)
		}
		k.check(step)
	}
	t.Logf("%d of 40 calls killed, %d completed", killed, completed)
	// A run that killed nothing, or in which nothing completed, showed
	// nothing: the delays no longer land inside the plugin's work, or the
	// plugin no longer works.
	if killed == 0 || completed == 0 {
		t.Fatalf("%d calls killed and %d completed of 40: want some of each", killed, completed)
	}
	k.finish()
}

// TestPluginKilledInBursts runs the plugin binary's ADDs (and some DELs)
// for eight attachments on one real pasta at the same time, so that they
// share the forwarder's transactions (one of them leads, the others wait
// for its answer), and kills some of them with SIGKILL after seeded
// delays: leaders mid-transaction, waiters before or after a leader took
// their request. After every burst each rule in the table is pesto's or
// claimed by exactly one record, pesto's rule is there and claimed by
// none, an ADD that finished has its rule in the table and recorded, and
// a DEL that finished left none. The DELs at the end leave pesto's rule
// alone.
func TestPluginKilledInBursts(t *testing.T) {
	k := newKillWorld(t, 8, "pp-kb", "b80")
	rng := rand.New(rand.NewPCG(19, 64))
	killed, finished := 0, 0
	for round := 0; round < 12; round++ {
		type call struct {
			a    int
			verb string
			cmd  *exec.Cmd
			kill *time.Timer
		}
		var calls []*call
		for a := 0; a < k.atts; a++ {
			verb := "ADD"
			if rng.IntN(4) == 0 {
				verb = "DEL"
			}
			calls = append(calls, &call{a: a, verb: verb, cmd: k.command(verb, a)})
		}
		delays := make([]time.Duration, len(calls))
		for i := range calls {
			delays[i] = -1
			if rng.IntN(3) == 0 {
				delays[i] = time.Duration(rng.IntN(30000)) * time.Microsecond
			}
		}
		for i, c := range calls {
			if err := c.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if delays[i] >= 0 {
				c.kill = time.AfterFunc(delays[i], func() { _ = c.cmd.Process.Signal(syscall.SIGKILL) })
			}
		}
		var done []string
		for _, c := range calls {
			wasKilled, err := k.wait(c.cmd)
			if c.kill != nil {
				c.kill.Stop()
			}
			switch {
			case wasKilled:
				killed++
			case err == nil:
				finished++
				done = append(done, fmt.Sprintf("%s %s", c.verb, k.cid(c.a)))
				host := k.hostRules()
				if c.verb == "ADD" && (!host.Contains(k.rule(c.a)) || !k.owned(c.a)) {
					// A later call of the same burst cannot have taken it
					// out: each attachment has one call per burst.
					t.Fatalf("round %d: ADD %s finished, but its rule %s is in the table: %v, owned by its record: %v",
						round, k.cid(c.a), k.rule(c.a), host.Contains(k.rule(c.a)), k.owned(c.a))
				}
				if c.verb == "DEL" && host.Contains(k.rule(c.a)) {
					t.Fatalf("round %d: DEL %s finished and left %s", round, k.cid(c.a), k.rule(c.a))
				}
			}
		}
		k.check(fmt.Sprintf("round %d (finished: %v)", round, done))
	}
	t.Logf("%d calls killed, %d finished", killed, finished)
	k.finish()
}
