package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

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
	r := newPlugRun(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", "k80")
	const atts = 4
	p := pastatest.FreePortRange(t, "tcp", atts+1)
	foreign := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p+atts, p+atts, 80, wire.FlagDualStack)
	r.f.Pesto(t, "-A", "-t", fmt.Sprintf("%d:80", p+atts))
	st := store.New(filepath.Join(r.dataDir, "records"))
	cid := func(a int) string { return fmt.Sprintf("pp-k%d", a) }
	conf := func(a int) []byte { return r.conf("", [2]uint16{p + uint16(a), 80}) }
	own := func(a int) wire.Rule {
		return wire.NewRule(wire.ProtoTCP, netip.Addr{}, p+uint16(a), p+uint16(a), 80, wire.FlagDualStack)
	}

	// A read retries while pasta is busy: it may still be serving the
	// connection of the plugin just killed.
	hostRules := func() *wire.Table {
		t.Helper()
		snap, err := ctlClient(r.f).Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return snap.Tables.Lookup(wire.PifHost)
	}
	check := func(step string) {
		t.Helper()
		host := hostRules()
		if !host.Contains(foreign) {
			t.Fatalf("%s: pesto's rule %s is gone: %v", step, foreign, host.Rules)
		}
		owners := map[[wire.RuleSize]byte]int{}
		for a := 0; a < atts; a++ {
			rec, err := st.Get(store.Key{Network: "pp-real", ContainerID: cid(a), IfName: "eth0"})
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatalf("%s: record of %s: %v", step, cid(a), err)
			}
			for _, o := range rec.Claimed() {
				owners[o.Rule.Key()]++
			}
		}
		if n := owners[foreign.Key()]; n != 0 {
			t.Fatalf("%s: pesto's rule %s is claimed by %d records: adopted", step, foreign, n)
		}
		for _, x := range host.Rules {
			if x.Equal(foreign) {
				continue
			}
			if n := owners[x.Key()]; n != 1 {
				t.Fatalf("%s: rule %s is claimed by %d records, want 1", step, x, n)
			}
		}
	}

	rng := rand.New(rand.NewPCG(7, 11))
	killed, completed := 0, 0
	for i := 0; i < 40; i++ {
		a := rng.IntN(atts)
		verb := "ADD"
		if rng.IntN(5) < 2 {
			verb = "DEL"
		}
		delay := time.Duration(rng.IntN(25000)) * time.Microsecond
		cmd := exec.Command(r.bin)
		cmd.Env = append(os.Environ(), "CNI_COMMAND="+verb, "CNI_CONTAINERID="+cid(a), "CNI_NETNS="+r.f.NS.Path,
			"CNI_IFNAME=eth0", "CNI_PATH="+filepath.Dir(r.bin))
		cmd.Stdin = bytes.NewReader(conf(a))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		err := cmd.Wait()
		timer.Stop()
		step := fmt.Sprintf("%d: %s %s killed after %v", i, verb, cid(a), delay)
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
			killed++
		case err == nil:
			completed++
			step = fmt.Sprintf("%d: %s %s", i, verb, cid(a))
			if verb == "DEL" && hostRules().Contains(own(a)) {
				t.Fatalf("%s: DEL succeeded and left %s", step, own(a))
			}
			if verb == "ADD" && !hostRules().Contains(own(a)) {
				t.Fatalf("%s: ADD succeeded and its rule %s is not in the table", step, own(a))
			}
		default:
			step = fmt.Sprintf("%d: %s %s failed: %v", i, verb, cid(a), err)
		}
		check(step)
	}
	t.Logf("%d of 40 calls killed, %d completed", killed, completed)
	// A run that killed nothing, or in which nothing completed, showed
	// nothing: the delays no longer land inside the plugin's work, or the
	// plugin no longer works.
	if killed == 0 || completed == 0 {
		t.Fatalf("%d calls killed and %d completed of 40: want some of each", killed, completed)
	}
	for a := 0; a < atts; a++ {
		r.must("DEL", cid(a), conf(a))
	}
	check("final DELs")
	if host := hostRules(); len(host.Rules) != 1 {
		t.Fatalf("after every DEL: %v, want pesto's rule alone", host.Rules)
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+atts), "k80")
}

// TestPluginKilledInBursts runs the plugin binary's ADDs (and some DELs)
// for eight attachments on one real pasta at the same time, so that they
// share the forwarder's transactions (one of them leads, the others wait
// for its answer), and kills some of them with SIGKILL after seeded
// delays: leaders mid-transaction, waiters before or after a leader took
// their request. After every burst each rule in the table is pesto's or
// claimed by exactly one record, pesto's rule is there, an ADD that
// finished has its rule in the table and recorded, and a DEL that
// finished left none. The DELs at the end leave pesto's rule alone.
func TestPluginKilledInBursts(t *testing.T) {
	r := newPlugRun(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", "b80")
	const atts = 8
	p := pastatest.FreePortRange(t, "tcp", atts+1)
	foreign := wire.NewRule(wire.ProtoTCP, netip.Addr{}, p+atts, p+atts, 80, wire.FlagDualStack)
	r.f.Pesto(t, "-A", "-t", fmt.Sprintf("%d:80", p+atts))
	st := store.New(filepath.Join(r.dataDir, "records"))
	cid := func(a int) string { return fmt.Sprintf("pp-kb%d", a) }
	conf := func(a int) []byte { return r.conf("", [2]uint16{p + uint16(a), 80}) }
	own := func(a int) wire.Rule {
		return wire.NewRule(wire.ProtoTCP, netip.Addr{}, p+uint16(a), p+uint16(a), 80, wire.FlagDualStack)
	}
	hostRules := func() *wire.Table {
		t.Helper()
		snap, err := ctlClient(r.f).Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return snap.Tables.Lookup(wire.PifHost)
	}
	owned := func(a int) bool {
		rec, err := st.Get(store.Key{Network: "pp-real", ContainerID: cid(a), IfName: "eth0"})
		if err != nil {
			return false
		}
		for _, o := range rec.Rules {
			if o.Rule.Equal(own(a)) {
				return true
			}
		}
		return false
	}
	check := func(step string) {
		t.Helper()
		host := hostRules()
		if !host.Contains(foreign) {
			t.Fatalf("%s: pesto's rule %s is gone: %v", step, foreign, host.Rules)
		}
		owners := map[[wire.RuleSize]byte]int{}
		for a := 0; a < atts; a++ {
			rec, err := st.Get(store.Key{Network: "pp-real", ContainerID: cid(a), IfName: "eth0"})
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatalf("%s: record of %s: %v", step, cid(a), err)
			}
			for _, o := range rec.Claimed() {
				owners[o.Rule.Key()]++
			}
		}
		for _, x := range host.Rules {
			if x.Equal(foreign) {
				continue
			}
			if n := owners[x.Key()]; n != 1 {
				t.Fatalf("%s: rule %s is claimed by %d records, want 1", step, x, n)
			}
		}
	}

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
		for a := 0; a < atts; a++ {
			verb := "ADD"
			if rng.IntN(4) == 0 {
				verb = "DEL"
			}
			cmd := exec.Command(r.bin)
			cmd.Env = append(os.Environ(), "CNI_COMMAND="+verb, "CNI_CONTAINERID="+cid(a), "CNI_NETNS="+r.f.NS.Path,
				"CNI_IFNAME=eth0", "CNI_PATH="+filepath.Dir(r.bin))
			cmd.Stdin = bytes.NewReader(conf(a))
			calls = append(calls, &call{a: a, verb: verb, cmd: cmd})
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
			err := c.cmd.Wait()
			if c.kill != nil {
				c.kill.Stop()
			}
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
				killed++
			case err == nil:
				finished++
				done = append(done, fmt.Sprintf("%s %s", c.verb, cid(c.a)))
				host := hostRules()
				if c.verb == "ADD" && (!host.Contains(own(c.a)) || !owned(c.a)) {
					// A later call of the same burst cannot have taken it
					// out: each attachment has one call per burst.
					t.Fatalf("round %d: ADD %s finished, but its rule %s is in the table: %v, owned by its record: %v",
						round, cid(c.a), own(c.a), host.Contains(own(c.a)), owned(c.a))
				}
				if c.verb == "DEL" && host.Contains(own(c.a)) {
					t.Fatalf("round %d: DEL %s finished and left %s", round, cid(c.a), own(c.a))
				}
			}
		}
		check(fmt.Sprintf("round %d (finished: %v)", round, done))
	}
	t.Logf("%d calls killed, %d finished", killed, finished)
	for a := 0; a < atts; a++ {
		r.must("DEL", cid(a), conf(a))
	}
	check("final DELs")
	if host := hostRules(); len(host.Rules) != 1 {
		t.Fatalf("after every DEL: %v, want pesto's rule alone", host.Rules)
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+atts), "b80")
}
