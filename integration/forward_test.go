package integration

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// TestForwardHostIP: for TCP and UDP and each kind of hostIP, ADD makes the
// host port answer from the server in the namespace, only on the addresses
// asked for; CHECK passes; DEL makes it stop answering.
func TestForwardHostIP(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "tcp-80")
	pastatest.ServeUDP(t, f.NS, ":80", "udp-80")

	cases := []struct {
		hostIP  string
		answer  []string // host addresses that must answer
		silence []string // host addresses that must not
	}{
		{"", []string{"127.0.0.1", "::1", "127.0.0.2"}, nil},
		{"127.0.0.1", []string{"127.0.0.1"}, []string{"::1", "127.0.0.2"}},
		{"::1", []string{"::1"}, []string{"127.0.0.1"}},
		{"127.0.0.2", []string{"127.0.0.2"}, []string{"127.0.0.1", "::1"}},
	}
	for _, proto := range []string{"tcp", "udp"} {
		for i, c := range cases {
			name := fmt.Sprintf("%s/hostIP=%q", proto, c.hostIP)
			t.Run(name, func(t *testing.T) {
				id := fmt.Sprintf("fwd-%s-%d", proto, i)
				port := pastatest.FreePort(t, proto)
				m := mapping{HostPort: port, ContainerPort: 80, Protocol: proto, HostIP: c.hostIP}
				n.mustAdd(t, id, m)
				reply := proto + "-80"
				for _, ip := range c.answer {
					pastatest.MustAnswer(t, proto, pastatest.HostPort(ip, port), reply)
				}
				for _, ip := range c.silence {
					pastatest.MustNotAnswer(t, proto, pastatest.HostPort(ip, port), reply)
				}
				if err := n.check(t, id, m); err != nil {
					t.Fatalf("CHECK after ADD: %v", err)
				}
				// ADD again is not an error and changes nothing.
				before := hostRules(t, f)
				n.mustAdd(t, id, m)
				if after := hostRules(t, f); len(after) != len(before) {
					t.Fatalf("repeated ADD: %d rules, before %d", len(after), len(before))
				}
				n.mustDel(t, id, m)
				for _, ip := range c.answer {
					pastatest.MustNotAnswer(t, proto, pastatest.HostPort(ip, port), reply)
				}
				if r := hostRules(t, f); len(r) != 0 {
					t.Fatalf("HOST table after DEL: %v, want empty", r)
				}
			})
		}
	}
}

// TestRangeCompacted: 1,000 consecutive mappings become one rule, and
// traffic flows at its first, middle and last port.
func TestRangeCompacted(t *testing.T) {
	const count = 1000
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	first := pastatest.FreePortRange(t, "tcp", count)
	const cfirst = 20000 // container ports 20000..20999
	ms := make([]mapping, count)
	for i := range ms {
		ms[i] = mapping{HostPort: first + uint16(i), ContainerPort: cfirst + uint16(i), Protocol: "tcp"}
	}
	probe := []int{0, count / 2, count - 1}
	for _, i := range probe {
		pastatest.ServeTCP(t, f.NS, fmt.Sprintf(":%d", cfirst+i), fmt.Sprintf("port %d", cfirst+i))
	}
	n.mustAdd(t, "range", ms...)

	rules := hostRules(t, f)
	if len(rules) != 1 {
		t.Fatalf("HOST table holds %d rules, want 1: %v", len(rules), rules)
	}
	r := rules[0]
	if r.First != first || r.Last != first+count-1 || r.To != cfirst {
		t.Fatalf("rule %v, want %d-%d => %d", r, first, first+count-1, cfirst)
	}
	var lines int
	for _, l := range strings.Split(f.Tables(t), "\n") {
		if strings.Contains(l, fmt.Sprintf(":%d-%d", first, first+count-1)) {
			lines++
		}
	}
	if lines != 1 {
		t.Fatalf("pesto shows the range on %d lines, want 1:\n%s", lines, f.Tables(t))
	}
	for _, i := range probe {
		port := first + uint16(i)
		pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), fmt.Sprintf("port %d", cfirst+i))
	}
	if err := n.check(t, "range", ms...); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	n.mustDel(t, "range", ms...)
	if r := hostRules(t, f); len(r) != 0 {
		t.Fatalf("HOST table after DEL: %v", r)
	}
}

// TestDelKeepsOtherRules: pasta's own rules and rules added with pesto are
// byte for byte the same after an ADD and a DEL of the plugin's, and the
// host port stops answering. DEL without mappings works from the record,
// and a second DEL succeeds.
func TestDelKeepsOtherRules(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	pastatest.ServeTCP(t, f.NS, ":81", "other")
	tcpPorts := pastatest.FreePorts(t, "tcp", 2)
	other, port := tcpPorts[0], tcpPorts[1]
	otherUDP := pastatest.FreePort(t, "udp")
	f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:81", other), "-u", fmt.Sprintf("%d:81", otherUDP))
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", other), "other")
	pesto, raw := f.Tables(t), f.ReadTables(t)

	m := mapping{HostPort: port, ContainerPort: 80, Protocol: "tcp"}
	n.mustAdd(t, "keep", m)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "web")
	if got := len(hostRules(t, f)); got != 3 {
		t.Fatalf("HOST holds %d rules after ADD, want 3 (two of pesto, one of ours)", got)
	}
	n.mustDel(t, "keep") // no mappings: the plugin works from its record
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "web")
	sameTables(t, "after DEL", f, pesto, raw)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", other), "other")
	n.mustDel(t, "keep", m)
	sameTables(t, "after a second DEL", f, pesto, raw)
}

// TestPortTaken: a host port bound by another process gives code 101, and
// the previous tables are active and listening again.
func TestPortTaken(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	prev := pastatest.FreePort(t, "tcp")
	n.mustAdd(t, "first", mapping{HostPort: prev, ContainerPort: 80, Protocol: "tcp"})
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", prev), "web")
	pesto, raw := f.Tables(t), f.ReadTables(t)

	l, err := net.Listen("tcp", "127.0.0.1:0") // someone else's socket
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	err = n.add(t, "second", mapping{HostPort: taken, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"})
	te := wantCode(t, "ADD on a taken port", err, 101)
	if !strings.Contains(te.Msg+te.Details, fmt.Sprint(taken)) {
		t.Errorf("the error does not name port %d: %v", taken, te)
	}
	sameTables(t, "after the socket fail", f, pesto, raw)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", prev), "web")
	if err := n.check(t, "first"); err != nil {
		t.Fatalf("CHECK of the earlier container: %v", err)
	}
	// The failed container owns nothing: its DEL succeeds and changes nothing.
	n.mustDel(t, "second")
	sameTables(t, "after DEL of the failed container", f, pesto, raw)
}

// TestConflict: a rule already in the table that overlaps the mapping
// gives code 100, and nothing changes.
func TestConflict(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":81", "theirs")
	port := pastatest.FreePort(t, "tcp")
	f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:81", port))
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "theirs")
	pesto, raw := f.Tables(t), f.ReadTables(t)

	err := n.add(t, "clash", mapping{HostPort: port, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"})
	wantCode(t, "ADD of a conflicting mapping", err, 100)
	sameTables(t, "after the safe fail", f, pesto, raw)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "theirs")
}

// TestSameRuleAsPesto: a rule that pesto added, byte for byte the one a
// container's mapping makes, stays pesto's: ADD gives code 100 naming it,
// the container's DEL leaves it, and its port keeps answering.
func TestSameRuleAsPesto(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "theirs")
	port := pastatest.FreePort(t, "tcp")
	f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:80", port))
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "theirs")
	pesto, raw := f.Tables(t), f.ReadTables(t)

	m := mapping{HostPort: port, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"}
	err := n.add(t, "same", m)
	te := wantCode(t, "ADD of pesto's own rule", err, 100)
	if !strings.Contains(te.Msg+te.Details, "does not own it") {
		t.Errorf("the error does not say the rule is another client's: %v", te)
	}
	sameTables(t, "after the refused ADD", f, pesto, raw)
	n.mustDel(t, "same", m)
	sameTables(t, "after the container's DEL", f, pesto, raw)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", port), "theirs")
}

// TestForwarderKilled: a forwarder killed between ADD and DEL makes CHECK
// fail with 11 or 104; DEL still succeeds.
func TestForwarderKilled(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	m := mapping{HostPort: pastatest.FreePort(t, "tcp"), ContainerPort: 80, Protocol: "tcp"}
	n.mustAdd(t, "killed", m)
	f.Kill(t)
	wantCode(t, "CHECK after the forwarder died", n.check(t, "killed", m), 11, 104)
	n.mustDel(t, "killed", m)
	n.mustDel(t, "killed", m)
}

// TestForwarderRestarted: a forwarder restarted without rules makes CHECK
// give 104; ADD repairs it.
func TestForwarderRestarted(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	m := mapping{HostPort: pastatest.FreePort(t, "tcp"), ContainerPort: 80, Protocol: "tcp"}
	addr := pastatest.HostPort("127.0.0.1", m.HostPort)
	n.mustAdd(t, "restarted", m)
	pastatest.MustAnswer(t, "tcp", addr, "web")
	f.Restart(t)
	pastatest.MustNotAnswer(t, "tcp", addr, "web")
	te := wantCode(t, "CHECK after a restart", n.check(t, "restarted", m), 104)
	if !strings.Contains(te.Msg+te.Details, fmt.Sprint(m.HostPort)) {
		t.Errorf("CHECK's error does not name port %d: %v", m.HostPort, te)
	}
	n.mustAdd(t, "restarted", m)
	pastatest.MustAnswer(t, "tcp", addr, "web")
	if err := n.check(t, "restarted", m); err != nil {
		t.Fatalf("CHECK after the repairing ADD: %v", err)
	}
	n.mustDel(t, "restarted", m)
}

// TestConcurrentContainers: bursts of 32 containers added at once against
// one forwarder, burst after burst, as a compose up and down repeated: in
// every burst every ADD succeeds, the HOST table holds exactly the burst's
// rules, and they forward; then 32 DELs at once all succeed and leave the
// table empty. The ADDs of a burst share the forwarder's transactions
// (one leads, the others wait for its answer), so a burst that stalls
// shows here as ADDs that time out.
func TestConcurrentContainers(t *testing.T) {
	const count, rounds = 64, 8
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	ms := make([]mapping, count)
	ports := pastatest.FreePorts(t, "tcp", count)
	for i := range ms {
		ms[i] = mapping{HostPort: ports[i], ContainerPort: uint16(9000 + i), Protocol: "tcp"}
		pastatest.ServeTCP(t, f.NS, fmt.Sprintf(":%d", 9000+i), fmt.Sprintf("container %d", i))
	}
	for round := 0; round < rounds; round++ {
		id := func(i int) string { return fmt.Sprintf("r%dc%02d", round, i) }
		start := time.Now()
		parallel(t, count, func(i int) error {
			return n.add(t, id(i), ms[i])
		})
		took := time.Since(start)
		rules := hostRules(t, f)
		want := map[[2]uint16]bool{}
		for _, m := range ms {
			want[[2]uint16{m.HostPort, m.ContainerPort}] = true
		}
		for _, r := range rules {
			if r.First != r.Last || !want[[2]uint16{r.First, r.To}] {
				t.Fatalf("round %d: HOST holds %v, not one of the burst's rules:\n%s", round, r, f.Tables(t))
			}
			delete(want, [2]uint16{r.First, r.To})
		}
		if len(rules) != count || len(want) != 0 {
			t.Fatalf("round %d: HOST holds %d rules, want %d (missing %v):\n%s", round, len(rules), count, want, f.Tables(t))
		}
		for i, m := range ms {
			pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", m.HostPort), fmt.Sprintf("container %d", i))
		}
		if round == 0 {
			parallel(t, count, func(i int) error {
				return n.check(t, id(i), ms[i])
			})
		}
		parallel(t, count, func(i int) error {
			return n.del(t, id(i), ms[i])
		})
		if r := hostRules(t, f); len(r) != 0 {
			t.Fatalf("round %d: HOST after %d DELs: %v", round, count, r)
		}
		t.Logf("round %d: %d ADDs in %v", round, count, took.Round(time.Millisecond))
	}
}

// parallel runs fn(0..count-1) at once and fails the test with every error.
func parallel(t *testing.T, count int, fn func(i int) error) {
	t.Helper()
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestStatus: STATUS succeeds while the forwarder answers and fails with
// code 50 when it is gone.
func TestStatus(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	if err := n.cni.GetStatusNetworkList(ctx(t), n.list); err != nil {
		t.Fatalf("STATUS with a running forwarder: %v", err)
	}
	f.Kill(t)
	wantCode(t, "STATUS with the forwarder gone", n.cni.GetStatusNetworkList(ctx(t), n.list), 50)
}

// TestGC: GC removes the rules of every attachment that is not valid and
// keeps the valid one's. It runs with an empty libcni cache, so that what
// removes the rules is the plugin's own GC from its records, not libcni's
// DEL of cached attachments.
func TestGC(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, nil)
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	ports := pastatest.FreePorts(t, "tcp", 4)
	f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:80", ports[3]))
	var ms []mapping
	for i := 0; i < 3; i++ {
		m := mapping{HostPort: ports[i], ContainerPort: 80, Protocol: "tcp"}
		ms = append(ms, m)
		n.mustAdd(t, fmt.Sprintf("gc%d", i), m)
	}
	if got := len(hostRules(t, f)); got != 4 {
		t.Fatalf("HOST holds %d rules, want 4", got)
	}
	fresh := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	err := fresh.GCNetworkList(ctx(t), n.list, &libcni.GCArgs{
		ValidAttachments: []types.GCAttachment{{ContainerID: "gc1", IfName: "eth0"}},
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	rules := hostRules(t, f)
	if len(rules) != 2 {
		t.Fatalf("HOST after GC holds %d rules, want 2 (pesto's and gc1's):\n%s", len(rules), f.Tables(t))
	}
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ms[1].HostPort), "web")
	for _, i := range []int{0, 2} {
		pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", ms[i].HostPort), "web")
	}
	if err := n.check(t, "gc1", ms[1]); err != nil {
		t.Fatalf("CHECK of the valid attachment after GC: %v", err)
	}
	// Through libcni with its cache, as a runtime does: DEL of the cached
	// stale attachments, then GC; nothing of ours is left.
	if err := n.cni.GCNetworkList(ctx(t), n.list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("GC with no valid attachments: %v", err)
	}
	if got := len(hostRules(t, f)); got != 1 {
		t.Fatalf("HOST after the second GC holds %d rules, want pesto's 1:\n%s", got, f.Tables(t))
	}
}

// TestCNIVersions: ADD, CHECK and DEL through libcni for each CNI version
// with CHECK, with traffic.
func TestCNIVersions(t *testing.T) {
	f := pastatest.Start(t)
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			n := newNetwork(t, f, nil)
			n.setVersion(t, v)
			m := mapping{HostPort: pastatest.FreePort(t, "tcp"), ContainerPort: 80, Protocol: "tcp"}
			res, err := n.cni.AddNetworkList(ctx(t), n.list, n.rt("v"+v, []mapping{m}))
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if got := res.Version(); got != v {
				t.Errorf("result version %s, want %s", got, v)
			}
			pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", m.HostPort), "web")
			if err := n.check(t, "v"+v, m); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			n.mustDel(t, "v"+v, m)
			pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", m.HostPort), "web")
		})
	}
}

// TestWithoutPIDFile: with no pidFile the plugin finds the forwarder by
// its control socket, and still tells a listening rule (CHECK passes)
// from a port taken by someone else (101).
func TestWithoutPIDFile(t *testing.T) {
	f := pastatest.Start(t)
	n := newNetwork(t, f, map[string]any{"pidFile": nil})
	pastatest.ServeTCP(t, f.NS, ":80", "web")
	m := mapping{HostPort: pastatest.FreePort(t, "tcp"), ContainerPort: 80, Protocol: "tcp"}
	n.mustAdd(t, "nopid", m)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", m.HostPort), "web")
	if err := n.check(t, "nopid", m); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	err = n.add(t, "nopid2", mapping{HostPort: taken, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"})
	wantCode(t, "ADD on a taken port without pidFile", err, 101)
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", m.HostPort), "web")
}
