package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// bench is one test's world: a data directory, a control socket server
// behaving like pasta, and the plugin's verbs called as skel calls them.
type bench struct {
	t       testing.TB
	dataDir string
	srv     *ctltest.Server
	network string
	stderr  bytes.Buffer
}

func newBench(t testing.TB, opts ...ctltest.Option) *bench {
	t.Helper()
	return &bench{t: t, dataDir: t.TempDir(), srv: ctltest.NewServer(t, ctltest.DefaultTables(), opts...), network: "pp-net"}
}

// testClient is the plugin's client for ctltest servers: their sockets
// listen on loopback addresses (ctltest.ListenAddrs).
func testClient(socket, pidFile string) *ctlclient.Client {
	return &ctlclient.Client{Path: socket, PIDFile: pidFile, ListenWait: attach.ListenWait,
		ListenAddrs: func(_ string, r wire.Rule) []netip.Addr { return ctltest.ListenAddrs(r) }}
}

func (b *bench) client(socket, pidFile string) *ctlclient.Client { return testClient(socket, pidFile) }

// conf is a plugin configuration for b's server, with extra keys (a JSON
// fragment, may be empty) and the mappings.
func (b *bench) conf(extra string, ms ...translate.PortMapping) []byte {
	b.t.Helper()
	m := map[string]any{
		"cniVersion": "1.1.0", "name": b.network, "type": "passt-portmap",
		"socket": b.srv.Path, "dataDir": b.dataDir, "timeout": "2s",
	}
	if ms != nil {
		m["runtimeConfig"] = map[string]any{"portMappings": ms}
	}
	if extra != "" {
		if err := json.Unmarshal([]byte("{"+extra+"}"), &m); err != nil {
			b.t.Fatalf("extra config %q: %v", extra, err)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		b.t.Fatal(err)
	}
	return out
}

// call runs a verb as skel would and returns its output and CNI error.
func (b *bench) call(verb, cid string, conf []byte) (string, *types.Error) {
	b.t.Helper()
	return b.callArgs(verb, cid, "", conf)
}

// callArgs is call with CNI_ARGS.
func (b *bench) callArgs(verb, cid, cniArgs string, conf []byte) (string, *types.Error) {
	b.t.Helper()
	var out bytes.Buffer
	p := &Plugin{Stdout: &out, Stderr: &b.stderr, Client: b.client} // a new plugin process each call
	args := &skel.CmdArgs{ContainerID: cid, Netns: "/var/run/netns/" + cid, IfName: "eth0", Args: cniArgs, Path: "/opt/cni/bin", StdinData: conf}
	fn := map[string]func(*skel.CmdArgs) error{"ADD": p.Add, "DEL": p.Del, "CHECK": p.Check, "STATUS": p.Status, "GC": p.GC}[verb]
	err := fn(args)
	if err == nil {
		return out.String(), nil
	}
	var te *types.Error
	if !errors.As(err, &te) {
		b.t.Fatalf("%s %s returned %T %v, not a CNI error", verb, cid, err, err)
	}
	return out.String(), te
}

func (b *bench) must(verb, cid string, conf []byte) string {
	b.t.Helper()
	out, err := b.call(verb, cid, conf)
	if err != nil {
		b.t.Fatalf("%s %s: %v (code %d)", verb, cid, err, err.Code)
	}
	return out
}

func (b *bench) mustFail(verb, cid string, conf []byte, code uint, says ...string) *types.Error {
	b.t.Helper()
	_, err := b.call(verb, cid, conf)
	if err == nil {
		b.t.Fatalf("%s %s succeeded, want code %d", verb, cid, code)
	}
	if err.Code != code {
		b.t.Fatalf("%s %s: code %d (%v), want %d", verb, cid, err.Code, err, code)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			b.t.Errorf("%s %s: %q does not say %q", verb, cid, err.Error(), s)
		}
	}
	b.t.Logf("%s %s: code %d: %v", verb, cid, err.Code, err)
	return err
}

// host returns the server's HOST rules in pesto notation.
func (b *bench) host() []string {
	var out []string
	for _, r := range b.srv.Tables().Lookup(wire.PifHost).Rules {
		out = append(out, strings.TrimSpace(r.String()))
	}
	return out
}

func (b *bench) wantHost(want ...string) {
	b.t.Helper()
	got := b.host()
	sort.Strings(got)
	want = append([]string(nil), want...)
	sort.Strings(want)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		b.t.Fatalf("HOST table:\n got %q\nwant %q", got, want)
	}
}

func (b *bench) record(cid string) *store.Record {
	b.t.Helper()
	r, err := store.New(filepath.Join(b.dataDir, "records")).Get(store.Key{Network: b.network, ContainerID: cid, IfName: "eth0"})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// freePorts returns n consecutive TCP ports free on 127.0.0.1 and ::1
// right now.
func freePorts(t testing.TB, n int) uint16 {
	t.Helper()
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if base+n > 65000 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, a := range []string{"127.0.0.1", "[::1]"} {
				l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, p))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return uint16(base)
		}
	}
	t.Fatal("no free port range")
	return 0
}

func tcp(host, ctr uint16) translate.PortMapping {
	return translate.PortMapping{HostPort: int(host), ContainerPort: int(ctr), Protocol: "tcp"}
}

func udp(host, ctr uint16) translate.PortMapping {
	return translate.PortMapping{HostPort: int(host), ContainerPort: int(ctr), Protocol: "udp"}
}

func rule(proto string, host, ctr uint16) string {
	return fmt.Sprintf("%s [*]:%d  =>  %d", proto, host, ctr)
}

// TestAddDelAdd: ADD, ADD again, DEL, DEL again, ADD: one set of rules,
// SPLICE untouched byte for byte, the record follows.
func TestAddDelAdd(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	splice := wire.Tables{*b.srv.Tables().Lookup(wire.PifSplice)}.AppendServer(nil)
	conf := b.conf("", tcp(p, 80), tcp(p+1, 81), udp(p, 53))
	out := b.must("ADD", "c1", conf)
	res, err := version.NewResult("1.1.0", []byte(out))
	if err != nil {
		t.Fatalf("ADD result %q: %v", out, err)
	}
	if r, _ := current.NewResultFromResult(res); len(r.Interfaces) != 0 || len(r.IPs) != 0 {
		t.Errorf("alone in the list, ADD returned %s, want an empty result", out)
	}
	want := []string{fmt.Sprintf("TCP [*]:%d-%d  =>  80-81", p, p+1), rule("UDP", p, 53)}
	b.wantHost(want...)
	rec := b.record("c1")
	if rec == nil || rec.Socket != b.srv.Path || len(rec.Rules) != 2 || rec.Managed {
		t.Fatalf("record after ADD: %+v", rec)
	}
	raw, err := os.ReadFile(store.New(filepath.Join(b.dataDir, "records")).RecordPath(store.Key{Network: b.network, ContainerID: "c1", IfName: "eth0"}))
	if err != nil || !strings.Contains(string(raw), fmt.Sprintf(`"rule": "TCP [*]:%d-%d  =>  80-81 "`, p, p+1)) {
		t.Errorf("record file (%v):\n%s", err, raw)
	}
	t.Logf("record file:\n%s", raw)
	b.must("ADD", "c1", conf)
	b.wantHost(want...)
	b.must("DEL", "c1", conf)
	b.wantHost()
	if rec := b.record("c1"); rec != nil {
		t.Fatalf("record after DEL: %+v", rec)
	}
	b.must("DEL", "c1", conf)
	b.must("ADD", "c1", conf)
	b.wantHost(want...)
	got := wire.Tables{*b.srv.Tables().Lookup(wire.PifSplice)}.AppendServer(nil)
	if !bytes.Equal(got, splice) {
		t.Error("SPLICE table changed")
	}
}

// TestAddChangesMappings: a second ADD with other mappings (a restarted
// runtime, a new plugin process) replaces exactly the attachment's rules.
func TestAddChangesMappings(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 3)
	b.must("ADD", "c1", b.conf("", tcp(p, 80), tcp(p+1, 81)))
	b.must("ADD", "c1", b.conf("", tcp(p+1, 81), tcp(p+2, 82)))
	b.wantHost(fmt.Sprintf("TCP [*]:%d-%d  =>  81-82", p+1, p+2))
	// No mappings at all: the attachment owns nothing, the record goes.
	b.must("ADD", "c1", b.conf(""))
	b.wantHost()
	if rec := b.record("c1"); rec != nil {
		t.Fatalf("record of an attachment owning nothing: %+v", rec)
	}
}

// TestTwoContainers: two attachments on one forwarder, and a rule of
// another client, never touch each other.
func TestTwoContainers(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 4)
	foreign := wire.NewRule(wire.ProtoTCP, netipLoop4, p+3, p+3, 99, 0)
	ts := b.srv.Tables()
	ts.Lookup(wire.PifHost).Rules = append(ts.Lookup(wire.PifHost).Rules, foreign)
	if err := b.srv.Update(ts); err != nil {
		t.Fatal(err)
	}
	f := strings.TrimSpace(foreign.String())
	c1, c2 := b.conf("", tcp(p, 80)), b.conf("", tcp(p+1, 80), tcp(p+2, 443))
	b.must("ADD", "c1", c1)
	b.must("ADD", "c2", c2)
	b.wantHost(f, rule("TCP", p, 80), rule("TCP", p+1, 80), rule("TCP", p+2, 443))
	b.must("DEL", "c1", c1)
	b.wantHost(f, rule("TCP", p+1, 80), rule("TCP", p+2, 443))
	b.must("ADD", "c1", b.conf("", tcp(p, 8080)))
	b.must("ADD", "c2", b.conf("", tcp(p+1, 80)))
	b.wantHost(f, rule("TCP", p, 8080), rule("TCP", p+1, 80))
	// DEL without mappings relies on the record alone.
	b.must("DEL", "c2", b.conf(""))
	b.wantHost(f, rule("TCP", p, 8080))
	b.must("CHECK", "c1", b.conf("", tcp(p, 8080)))
}

// TestDelAfterForwarderDied: the forwarder crashed (socket file left,
// connects refused) or is gone entirely: DEL succeeds and forgets.
func TestDelAfterForwarderDied(t *testing.T) {
	for _, how := range []string{"crashed", "removed"} {
		t.Run(how, func(t *testing.T) {
			b := newBench(t)
			p := freePorts(t, 2)
			conf := b.conf("", tcp(p, 80))
			b.must("ADD", "c1", conf)
			if how == "crashed" {
				// The forwarder dies right after switching to c2's update.
				b.srv.Inject(ctltest.Fault{CrashAfterSwitch: true})
				_, err := b.call("ADD", "c2", b.conf("", tcp(p+1, 80)))
				if err == nil || err.Code == 999 {
					t.Fatalf("ADD that killed the forwarder: %v", err)
				}
				t.Logf("ADD that killed the forwarder: code %d: %v", err.Code, err)
				b.must("DEL", "c2", conf)
			} else {
				b.srv.Close()
			}
			b.must("DEL", "c1", conf)
			if rec := b.record("c1"); rec != nil {
				t.Fatalf("record after DEL: %+v", rec)
			}
			b.must("DEL", "c1", conf)
		})
	}
}

// TestDelWithoutRecord: an attachment with no record has sent nothing
// (ADD writes its intent before sending), so its DEL removes nothing: not
// another client's rule identical to its mapping, not a rule of another
// network's attachment on the same forwarder; it succeeds and says so.
func TestDelWithoutRecord(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 3)
	b.addToHost(hostRule(p, 80)) // pesto's, byte for byte the mapping's rule
	other := *b
	other.network = "pp-other"
	other.must("ADD", "c1", other.conf("", tcp(p+1, 81)))
	before := b.srv.Tables().AppendServer(nil)
	b.must("DEL", "c1", b.conf("", tcp(p, 80), tcp(p+1, 81), tcp(p+2, 82)))
	if got := b.srv.Tables().AppendServer(nil); !bytes.Equal(got, before) {
		t.Fatalf("DEL without a record changed the tables:\n got %q\nwant %q", b.host(), []string{rule("TCP", p, 80), rule("TCP", p+1, 81)})
	}
	if !strings.Contains(b.stderr.String(), "no ownership record") || !strings.Contains(b.stderr.String(), "no rule was removed") {
		t.Errorf("stderr does not say what DEL left alone: %q", b.stderr.String())
	}
	if r := other.record("c1"); r == nil || len(r.Rules) != 1 {
		t.Fatalf("the other network's record: %+v", r)
	}
	// Without mappings there is nothing to say, and DEL twice succeeds.
	b.must("DEL", "c1", b.conf(""))
	if got := b.srv.Tables().AppendServer(nil); !bytes.Equal(got, before) {
		t.Fatal("a second DEL changed the tables")
	}
}

// TestGC removes exactly the attachments not listed, in this network only.
func TestGC(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 4)
	for i, cid := range []string{"c1", "c2", "c3"} {
		b.must("ADD", cid, b.conf("", tcp(p+uint16(i), 80)))
	}
	other := *b
	other.network = "pp-other"
	other.must("ADD", "c1", other.conf("", tcp(p+3, 80)))
	// A stale record that cannot be read, nor its backup copy, owns what
	// nobody can know: GC leaves it and reports it (5), and releases the
	// others all the same.
	st := store.New(filepath.Join(b.dataDir, "records"))
	c9 := st.RecordPath(store.Key{Network: b.network, ContainerID: "c9", IfName: "eth0"})
	if err := os.WriteFile(c9, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := b.conf(`"cni.dev/valid-attachments":[{"containerID":"c2","ifname":"eth0"},{"containerID":"c1","ifname":"eth1"}]`)
	b.mustFail("GC", "", valid, 5, c9, "remove them there")
	b.wantHost(rule("TCP", p+1, 80), rule("TCP", p+3, 80))
	if err := os.Remove(c9); err != nil {
		t.Fatal(err)
	}
	b.must("GC", "", valid)
	es, err := st.List(b.network)
	if err != nil || len(es) != 1 || es[0].Key.ContainerID != "c2" {
		t.Fatalf("records left: %+v %v", es, err)
	}
	if r := other.record("c1"); r == nil {
		t.Fatal("GC of one network removed another network's record")
	}
	// Without the list GC refuses; null and [] are empty lists.
	b.mustFail("GC", "", b.conf(""), 7, "cni.dev/valid-attachments")
	b.wantHost(rule("TCP", p+1, 80), rule("TCP", p+3, 80))
	b.must("GC", "", b.conf(`"cni.dev/valid-attachments":null`))
	b.must("GC", "", b.conf(`"cni.dev/attachments":[]`))
	b.wantHost(rule("TCP", p+3, 80))
}

// TestCheck: CHECK passes after ADD and fails with 104 naming each rule
// that went missing or does not listen.
func TestCheck(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	conf := b.conf("", tcp(p, 80), tcp(p+1, 81), udp(p, 53))
	b.must("ADD", "c1", conf)
	b.must("CHECK", "c1", conf)
	// Another client removes the UDP rule (a restarted forwarder loses all).
	ts := b.srv.Tables()
	h := ts.Lookup(wire.PifHost)
	h.Rules = h.Rules[:1]
	if err := b.srv.Update(ts); err != nil {
		t.Fatal(err)
	}
	b.mustFail("CHECK", "c1", conf, 104, "missing: HOST "+rule("UDP", p, 53))
	// Not listening: the port is taken when the forwarder rebinds.
	b.must("ADD", "c1", conf)
	b.srv.FailBind(p + 1)
	if err := b.srv.Update(b.srv.Tables()); err != nil {
		t.Fatal(err)
	}
	b.mustFail("CHECK", "c1", conf, 104, "not listening", fmt.Sprint(p+1))
	// Configured but never added.
	b.mustFail("CHECK", "c2", conf, 104, "no ownership record")
	// No mappings and no record: nothing to check.
	b.must("CHECK", "c3", b.conf(""))
	// Gone forwarder: 11.
	b.srv.Close()
	b.mustFail("CHECK", "c1", b.conf(`"timeout":"300ms"`, tcp(p, 80), tcp(p+1, 81), udp(p, 53)), 11, b.srv.Path)
}

// TestErrorCodes runs each row of the table through the verbs.
func TestErrorCodes(t *testing.T) {
	t.Run("7 bad mapping, forwarder not asked", func(t *testing.T) {
		b := newBench(t)
		b.mustFail("ADD", "c1", b.conf("", tcp(0, 80)), 7, "configuration key runtimeConfig.portMappings[0].hostPort: port out of range")
		b.mustFail("ADD", "c1", b.conf("", translate.PortMapping{HostPort: 80, ContainerPort: 80, Protocol: "sctp"}), 7, "runtimeConfig.portMappings[0].protocol", "sctp")
		b.mustFail("ADD", "c1", b.conf(`"timeout":"soon"`), 7, "timeout")
		if n := b.srv.Stats().Conns; n != 0 {
			t.Errorf("the forwarder was contacted %d times for a bad configuration", n)
		}
	})
	t.Run("100 conflict with another owner", func(t *testing.T) {
		b := newBench(t)
		p := freePorts(t, 1)
		b.must("ADD", "c1", b.conf("", tcp(p, 80)))
		b.mustFail("ADD", "c2", b.conf("", tcp(p+0, 81)), 100, "conflict", "entry 0", b.srv.Path)
		b.wantHost(rule("TCP", p, 80))
		// The record owns nothing: the DEL that follows removes nothing.
		if r := b.record("c2"); r == nil || len(r.Rules) != 0 || len(r.Pending) != 0 {
			t.Errorf("record after a safe fail: %+v, want one that owns nothing", r)
		}
		b.must("DEL", "c2", b.conf("", tcp(p+0, 81)))
		b.wantHost(rule("TCP", p, 80))
	})
	t.Run("100 forwarder refused", func(t *testing.T) {
		b := newBench(t)
		p := freePorts(t, 1)
		b.srv.Inject(ctltest.Fault{RejectUpdate: true})
		b.mustFail("ADD", "c1", b.conf("", tcp(p, 80)), 100, b.srv.Path, rule("TCP", p, 80), "from portMappings entry 0")
		b.wantHost()
	})
	t.Run("101 port taken, rolled back", func(t *testing.T) {
		b := newBench(t)
		p := freePorts(t, 2)
		b.must("ADD", "c1", b.conf("", tcp(p, 80)))
		b.srv.FailBind(p + 1)
		b.mustFail("ADD", "c1", b.conf("", tcp(p, 80), tcp(p+5, 81), tcp(p+1, 82)), 101, fmt.Sprintf("host ports %d not listening", p+1))
		b.wantHost(rule("TCP", p, 80))
		if r := b.record("c1"); r == nil || len(r.Rules) != 1 {
			t.Errorf("record after a socket fail: %+v", r)
		}
	})
	t.Run("102 rollback refused", func(t *testing.T) {
		b := newBench(t)
		p := freePorts(t, 2)
		b.must("ADD", "c1", b.conf("", tcp(p, 80)))
		// Connections: the update, its read-back, then the rollback.
		b.srv.Inject(ctltest.Fault{}, ctltest.Fault{}, ctltest.Fault{RejectUpdate: true})
		b.srv.FailBind(p + 1)
		b.mustFail("ADD", "c1", b.conf("", tcp(p, 80), tcp(p+1, 90)), 102,
			fmt.Sprintf("host ports %d not listening", p+1), "active now: HOST [", rule("TCP", p+1, 90), b.srv.Path)
		// The state is unknown: the attachment keeps owning what it may
		// have added, so that DEL takes it out.
		if r := b.record("c1"); r == nil || len(r.Rules) != 2 {
			t.Fatalf("record after a rollback fail: %+v", r)
		}
		b.must("DEL", "c1", b.conf(""))
		b.wantHost()
	})
	t.Run("103 protocol mismatch", func(t *testing.T) {
		h := wire.DefaultHello()
		h.Version = 3
		b := newBench(t)
		conf := b.conf("", tcp(freePorts(t, 1), 80))
		b.must("ADD", "c1", conf)
		// One connection each (DEL makes no probe of its own first).
		for verb, conns := range map[string]int{"ADD": 1, "CHECK": 1, "DEL": 1} {
			for i := 0; i < conns; i++ {
				b.srv.Inject(ctltest.Fault{Hello: &h})
			}
			b.mustFail(verb, "c1", conf, 103, "version 3", "[2]", b.srv.Path)
		}
		// A stream this client cannot decode: the same pif twice.
		hostT := *b.srv.Tables().Lookup(wire.PifHost)
		b.srv.Inject(ctltest.Fault{Greeting: wire.Tables{hostT, hostT}.AppendServer(wire.DefaultHello().Append(nil))})
		b.mustFail("ADD", "c1", conf, 103, "duplicate pif id 1", b.srv.Path)
		b.srv.Inject(ctltest.Fault{Hello: &h})
		b.mustFail("STATUS", "", b.conf(""), 50, "version 3")
		if r := b.record("c1"); r == nil || len(r.Rules) != 1 {
			t.Errorf("record after failed calls: %+v", r)
		}
	})
	t.Run("11 unreachable", func(t *testing.T) {
		b := newBench(t)
		b.srv.Close()
		b.mustFail("ADD", "c1", b.conf(`"timeout":"300ms"`, tcp(freePorts(t, 1), 80)), 11, b.srv.Path)
	})
	t.Run("11 busy", func(t *testing.T) {
		b := newBench(t, ctltest.WithDefaultFault(ctltest.Fault{StallAt: 5}))
		b.mustFail("ADD", "c1", b.conf(`"timeout":"300ms"`, tcp(freePorts(t, 1), 80)), 11, b.srv.Path)
	})
	t.Run("11 attachment locked", func(t *testing.T) {
		b := newBench(t)
		l, err := store.New(filepath.Join(b.dataDir, "records")).Lock(t.Context(), store.Key{Network: b.network, ContainerID: "c1", IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock()
		b.mustFail("ADD", "c1", b.conf(`"timeout":"100ms"`, tcp(freePorts(t, 1), 80)), 11, "held by another")
	})
}

// TestStatus: a fixed socket must answer; a per-container socket needs a
// writable data directory.
func TestStatus(t *testing.T) {
	b := newBench(t)
	b.must("STATUS", "", b.conf(""))
	b.must("STATUS", "", b.conf(`"socket":"/run/pp-none/${CNI_CONTAINERID}.sock"`))
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	b.mustFail("STATUS", "", b.conf(`"socket":"/run/${CNI_CONTAINERID}.sock","dataDir":"`+file+`/sub"`), 50, "dataDir")
	b.srv.Close()
	b.mustFail("STATUS", "", b.conf(`"timeout":"300ms"`), 50, b.srv.Path)
}

// TestResultVersions: alone, ADD returns an empty result of the asked
// version; chained, the previous result unchanged in that version.
func TestResultVersions(t *testing.T) {
	b := newBench(t)
	prev := `{"cniVersion":"%s","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/var/run/netns/c1"}],` +
		`"ips":[{%s"address":"10.88.0.2/16","gateway":"10.88.0.1","interface":0}],"dns":{"nameservers":["10.88.0.1"]}}`
	for _, v := range SupportedVersions.SupportedVersions() {
		for _, chained := range []bool{false, true} {
			extra := fmt.Sprintf(`"cniVersion":%q`, v)
			var want string
			if chained {
				ver := ""
				if v < "1.0.0" {
					ver = `"version":"4",`
				}
				want = fmt.Sprintf(prev, v, ver)
				extra += `,"prevResult":` + want
			}
			out := b.must("ADD", "c1", b.conf(extra))
			res, err := version.NewResult(v, []byte(out))
			if err != nil {
				t.Fatalf("%s: result %s: %v", v, out, err)
			}
			if res.Version() != v {
				t.Errorf("%s: result version %s", v, res.Version())
			}
			if chained {
				var g, w any
				json.Unmarshal([]byte(out), &g)
				json.Unmarshal([]byte(want), &w)
				gb, _ := json.Marshal(g)
				wb, _ := json.Marshal(w)
				if !bytes.Equal(gb, wb) {
					t.Errorf("%s: chained result changed:\n got %s\nwant %s", v, gb, wb)
				}
			}
		}
	}
}

var netipLoop4 = mustAddr("127.0.0.1")

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestConcurrentAdds: attachments added and deleted at the same time on
// one forwarder (as parallel plugin processes) lose none of each other's
// rules: each transaction is one read-modify-write on one connection.
func TestConcurrentAdds(t *testing.T) {
	b := newBench(t)
	const n = 8
	p := freePorts(t, n)
	var want []string
	errs := make(chan *types.Error, n)
	for i := 0; i < n; i++ {
		want = append(want, rule("TCP", p+uint16(i), 80))
		go func() {
			_, err := b.call("ADD", fmt.Sprintf("c%d", i), b.conf(`"timeout":"20s"`, tcp(p+uint16(i), 80)))
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("parallel ADD: %v", err)
		}
	}
	b.wantHost(want...)
	for i := 0; i < n; i += 2 {
		go func() {
			_, err := b.call("DEL", fmt.Sprintf("c%d", i), b.conf(`"timeout":"20s"`))
			errs <- err
		}()
	}
	for i := 0; i < n; i += 2 {
		if err := <-errs; err != nil {
			t.Fatalf("parallel DEL: %v", err)
		}
	}
	var left []string
	for i := 1; i < n; i += 2 {
		left = append(left, want[i])
	}
	b.wantHost(left...)
}

// TestForwarderRestarted: a forwarder that restarted lost every rule;
// CHECK names them, ADD (the record kept, a new plugin process) puts them
// back, and DEL of rules already gone succeeds.
func TestForwarderRestarted(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	conf := b.conf("", tcp(p, 80), udp(p+1, 53))
	b.must("ADD", "c1", conf)
	if err := b.srv.Update(ctltest.DefaultTables()); err != nil { // as freshly started
		t.Fatal(err)
	}
	b.mustFail("CHECK", "c1", conf, 104, "missing: HOST "+rule("TCP", p, 80), "missing: HOST "+rule("UDP", p+1, 53))
	b.must("ADD", "c1", conf)
	b.wantHost(rule("TCP", p, 80), rule("UDP", p+1, 53))
	b.must("CHECK", "c1", conf)
	if err := b.srv.Update(ctltest.DefaultTables()); err != nil {
		t.Fatal(err)
	}
	b.must("DEL", "c1", conf)
	b.wantHost()
	if r := b.record("c1"); r != nil {
		t.Fatalf("record after DEL: %+v", r)
	}
}

// TestSocketMoves: CNI_ARGS PASST_SOCKET points one call at another
// forwarder; the attachment's rules move there (removed from the old one),
// and a later DEL without the override follows the record.
func TestSocketMoves(t *testing.T) {
	b := newBench(t)
	other := ctltest.NewServer(t, ctltest.DefaultTables())
	p := freePorts(t, 1)
	conf := b.conf("", tcp(p, 80))
	b.must("ADD", "c1", conf)
	if _, err := b.callArgs("ADD", "c1", "IgnoreUnknown=1;PASST_SOCKET="+other.Path, conf); err != nil {
		t.Fatalf("ADD with PASST_SOCKET: %v", err)
	}
	b.wantHost()
	if got := other.Tables().Lookup(wire.PifHost).Rules; len(got) != 1 || strings.TrimSpace(got[0].String()) != rule("TCP", p, 80) {
		t.Fatalf("other forwarder's HOST: %v", got)
	}
	if r := b.record("c1"); r == nil || r.Socket != other.Path {
		t.Fatalf("record: %+v", r)
	}
	b.must("DEL", "c1", conf)
	if got := other.Tables().Lookup(wire.PifHost).Rules; len(got) != 0 {
		t.Fatalf("other forwarder's HOST after DEL: %v", got)
	}
}

// TestNoVerify: with "verify": false the update is sent and owned without
// looking at listeners, so a port that cannot listen is no error.
func TestNoVerify(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 1)
	b.srv.FailBind(p)
	conf := b.conf(`"verify":false`, tcp(p, 80))
	b.must("ADD", "c1", conf)
	b.wantHost(rule("TCP", p, 80))
	if r := b.record("c1"); r == nil || len(r.Rules) != 1 {
		t.Fatalf("record after an unverified ADD: %+v", r)
	}
	// CHECK still looks.
	b.mustFail("CHECK", "c1", conf, 104, "not listening")
	b.must("DEL", "c1", conf)
	b.wantHost()
}
