package integration

// Real-pasta checks of the plugin binary's entry points, run as a runtime
// runs a CNI plugin: environment (CNI_COMMAND, CNI_CONTAINERID, ...) and
// the configuration on stdin, the result or the CNI error JSON on stdout.
// The plugin is given an external forwarder (pastatest.Start) by "socket".

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// pluginBinary returns the plugin binary that TestMain built.
func pluginBinary(t *testing.T) string {
	t.Helper()
	return filepath.Join(managedPlugin(t), "passt-portmap")
}

type plugRun struct {
	t       *testing.T
	bin     string
	f       *pastatest.Forwarder
	dataDir string
}

func newPlugRun(t *testing.T) *plugRun {
	t.Helper()
	dataDir, err := os.MkdirTemp("", "pp-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	return &plugRun{t: t, bin: pluginBinary(t), f: pastatest.Start(t), dataDir: dataDir}
}

func (r *plugRun) conf(extra string, ports ...[2]uint16) []byte {
	var ms []string
	for _, p := range ports {
		ms = append(ms, fmt.Sprintf(`{"hostPort":%d,"containerPort":%d,"protocol":"tcp"}`, p[0], p[1]))
	}
	if extra != "" {
		extra = "," + extra
	}
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pp-real","type":"passt-portmap","socket":%q,"pidFile":%q,
		"dataDir":%q,"timeout":"10s","runtimeConfig":{"portMappings":[%s]}%s}`,
		r.f.Socket, r.f.PIDFile, r.dataDir, strings.Join(ms, ","), extra))
}

// command is the plugin binary's call of verb for container cid on eth0
// of the forwarder's namespace, as a runtime makes it.
func (r *plugRun) command(ctx context.Context, verb, cid string, conf []byte) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.bin)
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+verb, "CNI_CONTAINERID="+cid, "CNI_NETNS="+r.f.NS.Path,
		"CNI_IFNAME=eth0", "CNI_PATH="+filepath.Dir(r.bin))
	cmd.Stdin = bytes.NewReader(conf)
	return cmd
}

// exec runs the plugin binary for verb and returns stdout and the CNI
// error it printed, if it failed.
func (r *plugRun) exec(verb, cid string, conf []byte) (string, *types.Error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := r.command(ctx, verb, cid, conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 {
		r.t.Logf("%s %s stderr: %s", verb, cid, stderr.String())
	}
	if err == nil {
		return stdout.String(), nil
	}
	var e types.Error
	if jerr := json.Unmarshal(stdout.Bytes(), &e); jerr != nil {
		r.t.Fatalf("%s %s: %v, and stdout is not a CNI error: %q", verb, cid, err, stdout.String())
	}
	return stdout.String(), &e
}

func (r *plugRun) must(verb, cid string, conf []byte) string {
	r.t.Helper()
	out, e := r.exec(verb, cid, conf)
	if e != nil {
		r.t.Fatalf("%s %s: code %d: %s; %s\npasta log:\n%s", verb, cid, e.Code, e.Msg, e.Details, r.f.Log())
	}
	return out
}

func (r *plugRun) mustFail(verb, cid string, conf []byte, code uint, says ...string) {
	r.t.Helper()
	_, e := r.exec(verb, cid, conf)
	if e == nil {
		r.t.Fatalf("%s %s succeeded, want code %d", verb, cid, code)
	}
	if e.Code != code {
		r.t.Fatalf("%s %s: code %d (%s; %s), want %d", verb, cid, e.Code, e.Msg, e.Details, code)
	}
	for _, s := range says {
		if !strings.Contains(e.Msg+"; "+e.Details, s) {
			r.t.Errorf("%s %s: %q does not say %q", verb, cid, e.Msg+"; "+e.Details, s)
		}
	}
	r.t.Logf("%s %s: code %d: %s; %s", verb, cid, e.Code, e.Msg, e.Details)
}

// host returns the forwarder's HOST rules in pesto notation, sorted.
func (r *plugRun) host() string {
	var out []string
	for _, x := range r.f.ReadTables(r.t).Lookup(wire.PifHost).Rules {
		out = append(out, strings.TrimSpace(x.String()))
	}
	return strings.Join(out, " | ")
}

// TestPluginRealPasta drives the binary against a real pasta: ADD,
// repeated ADD, two containers, CHECK, a taken port (101, rolled back),
// GC, DEL twice, a restarted forwarder (CHECK 104, ADD restores it), a
// killed one (CHECK 11, DEL succeeds at once).
func TestPluginRealPasta(t *testing.T) {
	r := newPlugRun(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", "c80")
	pastatest.ServeTCP(t, r.f.NS, ":81", "c81")
	p := pastatest.FreePortRange(t, "tcp", 4)
	addr := func(port uint16) string { return pastatest.HostPort("127.0.0.1", port) }
	c1 := r.conf("", [2]uint16{p, 80})
	c2 := r.conf("", [2]uint16{p + 1, 81})

	out := r.must("ADD", "pp-c1", c1)
	if !strings.Contains(out, `"cniVersion": "1.1.0"`) {
		t.Errorf("ADD result: %s", out)
	}
	pastatest.MustAnswer(t, "tcp", addr(p), "c80")
	before := r.f.ReadTables(t)
	r.must("ADD", "pp-c1", c1)
	if after := r.f.ReadTables(t); !bytes.Equal(after.AppendServer(nil), before.AppendServer(nil)) {
		t.Fatalf("repeated ADD changed the tables:\n%s", r.f.Tables(t))
	}
	r.must("ADD", "pp-c2", c2)
	pastatest.MustAnswer(t, "tcp", addr(p+1), "c81")
	pastatest.MustAnswer(t, "tcp", addr(p), "c80")
	r.must("CHECK", "pp-c1", c1)
	r.must("CHECK", "pp-c2", c2)
	t.Logf("pesto after two ADDs:\n%s", r.f.Tables(t))

	// "show" for a person.
	show, err := exec.Command(r.bin, "show", r.f.Socket, r.f.PIDFile).CombinedOutput()
	if err != nil || !strings.Contains(string(show), fmt.Sprintf("TCP [*]:%d  =>  80", p)) || !strings.Contains(string(show), "listening") {
		t.Errorf("show: %v:\n%s", err, show)
	}
	t.Logf("show:\n%s", show)

	// A port held by another process: the forwarder cannot listen, the
	// update is rolled back, the others still answer.
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p+2))
	if err != nil {
		t.Fatal(err)
	}
	tablesBefore := r.host()
	r.mustFail("ADD", "pp-c3", r.conf("", [2]uint16{p + 2, 80}), 101, fmt.Sprintf("host ports %d not listening", p+2), "rolled back")
	ln.Close()
	if got := r.host(); got != tablesBefore {
		t.Errorf("after a socket fail:\n got %s\nwant %s", got, tablesBefore)
	}
	pastatest.MustAnswer(t, "tcp", addr(p), "c80")
	pastatest.MustAnswer(t, "tcp", addr(p+1), "c81")

	// Safe fail: a rule of another client (pesto) holds the port; the
	// plugin refuses before sending, naming the entry and the conflict.
	r.f.Pesto(t, "-A", "-t", fmt.Sprintf("127.0.0.1/%d:80", p+2))
	r.mustFail("ADD", "pp-c5", r.conf("", [2]uint16{p + 3, 99}, [2]uint16{p + 2, 80}), 100, "conflict", "entry 1")
	r.f.Pesto(t, "-D", "-t", fmt.Sprintf("127.0.0.1/%d:80", p+2))
	if got := r.host(); got != tablesBefore {
		t.Errorf("after a safe fail:\n got %s\nwant %s", got, tablesBefore)
	}
	// Bad mapping: 7, naming the entry.
	r.mustFail("ADD", "pp-c5", r.conf("", [2]uint16{0, 80}), 7, "configuration key runtimeConfig.portMappings[0].hostPort: port out of range")

	// GC keeps c2, drops c1 (and c4, which ADD made meanwhile).
	r.must("ADD", "pp-c4", r.conf("", [2]uint16{p + 3, 80}))
	r.must("GC", "", r.conf(`"cni.dev/valid-attachments":[{"containerID":"pp-c2","ifname":"eth0"}]`))
	if got, want := r.host(), fmt.Sprintf("TCP [*]:%d  =>  81", p+1); got != want {
		t.Fatalf("after GC: %s, want %s", got, want)
	}
	pastatest.MustNotAnswer(t, "tcp", addr(p), "c80")
	r.must("DEL", "pp-c1", c1)
	r.must("DEL", "pp-c1", c1)

	// A restarted forwarder lost the rules: CHECK says which; ADD
	// restores them.
	r.f.Restart(t)
	r.mustFail("CHECK", "pp-c2", c2, 104, fmt.Sprintf("missing: HOST TCP [*]:%d  =>  81", p+1))
	r.must("ADD", "pp-c2", c2)
	pastatest.MustAnswer(t, "tcp", addr(p+1), "c81")

	// A killed forwarder: CHECK cannot reach it (11), DEL succeeds at once.
	r.f.Kill(t)
	r.mustFail("CHECK", "pp-c2", r.conf(`"timeout":"500ms"`, [2]uint16{p + 1, 81}), 11, r.f.Socket)
	start := time.Now()
	r.must("DEL", "pp-c2", c2)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("DEL of a dead forwarder took %v", d)
	}
	r.must("DEL", "pp-c2", c2)
}

// TestPluginRealPastaMismatchedStatus: STATUS of a fixed socket asks the
// real forwarder; of a dead one it fails with 50.
func TestPluginRealPastaStatus(t *testing.T) {
	r := newPlugRun(t)
	r.must("STATUS", "", r.conf(""))
	r.f.Kill(t)
	r.mustFail("STATUS", "", r.conf(`"timeout":"500ms"`), 50, r.f.Socket)
}

// TestPluginDelAsNamespaceGoes: a runtime removes a container's
// namespace while it calls DEL, and the pasta attached to it is on its
// way out (pasta exits when its namespace goes, and may close a
// connection it accepted without a hello). Every DEL succeeds: the
// rules went with the forwarder. The delays spread the namespace's
// removal over the DEL's connection.
func TestPluginDelAsNamespaceGoes(t *testing.T) {
	for i := range 16 {
		t.Run(fmt.Sprintf("removed after %dms", i/2), func(t *testing.T) {
			r := newPlugRun(t)
			c := r.conf("", [2]uint16{pastatest.FreePort(t, "tcp"), 80})
			r.must("ADD", "pp-gone", c)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			del := r.command(ctx, "DEL", "pp-gone", c)
			var out bytes.Buffer
			del.Stdout, del.Stderr = &out, &out
			if err := del.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(i/2) * time.Millisecond)
			r.f.NS.Delete(t)
			if err := del.Wait(); err != nil {
				t.Fatalf("DEL: %v: %s", err, out.String())
			}
			r.must("DEL", "pp-gone", c)
		})
	}
}

// TestPluginRealPastaParallel: attachments added and deleted at the same
// time on one real pasta (every switch closes and reopens all listeners)
// all end up with their rules, and lose none of each other's.
func TestPluginRealPastaParallel(t *testing.T) {
	r := newPlugRun(t)
	pastatest.ServeTCP(t, r.f.NS, ":80", "c80")
	const n = 6
	p := pastatest.FreePortRange(t, "tcp", n)
	run := func(verb string, idx []int) {
		t.Helper()
		errs := make(chan string, len(idx))
		for _, i := range idx {
			go func() {
				_, e := r.exec(verb, fmt.Sprintf("pp-p%d", i), r.conf(`"timeout":"30s"`, [2]uint16{p + uint16(i), 80}))
				if e != nil {
					errs <- fmt.Sprintf("%s pp-p%d: code %d: %s; %s", verb, i, e.Code, e.Msg, e.Details)
					return
				}
				errs <- ""
			}()
		}
		for range idx {
			if e := <-errs; e != "" {
				t.Error(e)
			}
		}
	}
	run("ADD", []int{0, 1, 2, 3, 4, 5})
	for i := 0; i < n; i++ {
		pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+uint16(i)), "c80")
	}
	run("DEL", []int{0, 2, 4})
	for i := 0; i < n; i++ {
		addr := pastatest.HostPort("127.0.0.1", p+uint16(i))
		if i%2 == 0 {
			pastatest.MustNotAnswer(t, "tcp", addr, "c80")
		} else {
			pastatest.MustAnswer(t, "tcp", addr, "c80")
		}
	}
	run("CHECK", []int{1, 3, 5})
}

// TestPluginManagedGC: GC stops the managed forwarders of stale
// attachments and removes their directories and records, and leaves the
// valid attachment's forwarder running with its rule.
func TestPluginManagedGC(t *testing.T) {
	bin := pluginBinary(t)
	pasta, _ := pastatest.Bins(t)
	dataDir, err := os.MkdirTemp("", "pp-mdata-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	p := pastatest.FreePortRange(t, "tcp", 2)
	conf := func(extra string, port uint16) []byte {
		return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pp-managed","type":"passt-portmap","pasta":%q,"dataDir":%q,"timeout":"15s",
			"runtimeConfig":{"portMappings":[{"hostPort":%d,"containerPort":80,"protocol":"tcp"}]}%s}`, pasta, dataDir, port, extra))
	}
	type att struct {
		cid string
		ns  *pastatest.NetNS
		r   *plugRun
	}
	var atts []att
	for i := 0; i < 2; i++ {
		n := pastatest.NewNetNS(t)
		pastatest.ServeTCP(t, n, ":80", fmt.Sprintf("m%d", i))
		// plugRun without a forwarder of its own: exec only needs the netns.
		r := &plugRun{t: t, bin: bin, f: &pastatest.Forwarder{NS: n}, dataDir: dataDir}
		a := att{cid: fmt.Sprintf("pp-m%d", i), ns: n, r: r}
		atts = append(atts, a)
		out := r.must("ADD", a.cid, conf("", p+uint16(i)))
		if !strings.Contains(out, `"interfaces"`) {
			t.Errorf("managed ADD result has no interfaces: %s", out)
		}
		pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+uint16(i)), fmt.Sprintf("m%d", i))
		t.Cleanup(func() { r.exec("DEL", a.cid, conf("", p+uint16(i))) })
	}
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "forwarders", "*"))
	if len(dirs) != 2 {
		t.Fatalf("forwarder directories after two managed ADDs: %v", dirs)
	}
	atts[0].r.must("GC", "", conf(`,"cni.dev/valid-attachments":[{"containerID":"pp-m0","ifname":"eth0"}]`, p))
	pastatest.MustAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p), "m0")
	pastatest.MustNotAnswer(t, "tcp", pastatest.HostPort("127.0.0.1", p+1), "m1")
	left, _ := filepath.Glob(filepath.Join(dataDir, "forwarders", "*"))
	recs, _ := filepath.Glob(filepath.Join(dataDir, "records", "pp-managed", "*.json"))
	if len(left) != 1 || len(recs) != 1 || !strings.Contains(recs[0], "pp-m0@") {
		t.Fatalf("after GC: forwarder dirs %v, records %v", left, recs)
	}
	atts[0].r.must("CHECK", "pp-m0", conf("", p))
}
