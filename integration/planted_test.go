package integration

// The class test of the data directory's safety: every path the plugin
// and its pasta use under dataDir, in turn, holds something planted there
// (a symbolic link to a file, one to a directory, a hard link to a file
// outside, a FIFO, a UNIX socket, a directory), before the first ADD and
// while an attachment is live; then every verb runs through both front
// ends (CNI ADD, CHECK, STATUS, DEL, GC; netavark setup and teardown) and
// "show". Whatever each verb does, nothing outside dataDir changes,
// nothing waits past the timeout, and a refusal (5) names the planted
// path. Once the plant is gone, DEL cleans up. The paths of a managed
// attachment are planted under a managed configuration; those of the
// queue where the ADDs of a forwarder started elsewhere meet (group
// commit) under a configuration that names that forwarder's socket, a
// real pasta of the test's own, through the CNI verbs (the netavark
// driver has no such setting).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// plantTimeout is the plugin's "timeout" in this test: every verb must
// be over within it and a margin for starting processes.
const plantTimeout = 3 * time.Second

// plantPath is a path under dataDir that the plugin or pasta uses, and
// whether it is a directory.
type plantPath struct {
	rel string
	dir bool
}

// plantPaths lists every path the plugin and pasta touch under dataDir
// for the attachment of (network, cid, eth0).
func plantPaths(network, cid string) []plantPath {
	rec := "records/" + network + "/" + cid + "@eth0"
	fwd := "forwarders/" + filepath.Base(attachmentDir("/", network, cid, "eth0"))
	out := []plantPath{
		{"records", true},
		{"records/" + network, true},
		{rec + ".json", false},
		{rec + ".json.bak", false},
		{rec + ".lock", false},
		{"records/" + network + "/." + cid + "@eth0.json.tmp-planted", false},
		{"records/" + network + "/.scan-cursor", false},
		{"records/.probe-planted", false},
		{"forwarders", true},
		{fwd, true},
	}
	for _, n := range forwarder.Names {
		out = append(out, plantPath{fwd + "/" + n, false})
	}
	return out
}

// queuePaths lists every path an attached ADD on the forwarder at socket
// touches under dataDir to meet the others (group commit): the queues'
// directory, this forwarder's queue, its leader lock, and a request as
// posted (a temporary file), waiting (.req) and taken (.run): a leader
// reads every request of the queue, whoever posted it.
func queuePaths(socket string) []plantPath {
	h := sha256.Sum256([]byte(socket))
	q := "queue/" + hex.EncodeToString(h[:8])
	return []plantPath{
		{"queue", true},
		{q, true},
		{q + "/leader", false},
		{q + "/planted.req", false},
		{q + "/planted.run", false},
		{q + "/.tmp-planted", false},
	}
}

// outside is a tree outside dataDir that plants point to.
type outside struct {
	dir, file, sub, linked string
}

func newOutside(t *testing.T) *outside {
	t.Helper()
	dir := pastatest.TempDir(t, "pp-outside-")
	o := &outside{dir: dir, file: filepath.Join(dir, "precious"), sub: filepath.Join(dir, "subdir"), linked: filepath.Join(dir, "linked")}
	for _, f := range []string{o.file, o.linked} {
		if err := os.WriteFile(f, []byte("precious "+filepath.Base(f)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(o.sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.sub, "inner"), []byte("inner\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// digest is the tree's names, types, modes, owners and contents.
func (o *outside) digest(t *testing.T) string {
	t.Helper()
	h := sha256.New()
	var lines []string
	err := filepath.WalkDir(o.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", p, st.Mode, st.Uid, st.Gid)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	h.Write([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h.Sum(nil))
}

// plantKind puts something at path that the plugin did not make.
type plantKind struct {
	name  string
	files bool // also planted where a directory belongs
	plant func(path string, o *outside) error
}

var plantKinds = []plantKind{
	{"symlink to a file", true, func(p string, o *outside) error { return os.Symlink(o.file, p) }},
	{"symlink to a directory", true, func(p string, o *outside) error { return os.Symlink(o.sub, p) }},
	{"hard link to an outside file", true, func(p string, o *outside) error { return os.Link(o.linked, p) }},
	{"FIFO", true, func(p string, _ *outside) error { return unix.Mkfifo(p, 0o600) }},
	{"UNIX socket", true, func(p string, _ *outside) error {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return err
		}
		ln.SetUnlinkOnClose(false)
		return ln.Close() // a stale socket file: nobody listens
	}},
	{"directory", false, func(p string, _ *outside) error { return os.Mkdir(p, 0o700) }},
}

// plantCase is one planted path in a fresh data directory, namespace
// and attachment.
type plantCase struct {
	t        *testing.T
	bin      string
	pasta    string
	dataDir  string
	ns       *pastatest.NetNS
	fwd      *pastatest.Forwarder // a forwarder started elsewhere; nil: managed
	network  string
	cid      string
	port     uint16
	outcomes []string
}

func (c *plantCase) cniConf(extra string) []byte {
	mode := fmt.Sprintf(`"pasta":%q`, c.pasta)
	if c.fwd != nil {
		mode = fmt.Sprintf(`"socket":%q,"pidFile":%q`, c.fwd.Socket, c.fwd.PIDFile)
	}
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"type":"passt-portmap",%s,"dataDir":%q,"timeout":%q,
		"runtimeConfig":{"portMappings":[{"hostPort":%d,"containerPort":80,"protocol":"tcp"}]}%s}`,
		c.network, mode, c.dataDir, plantTimeout.String(), c.port, extra))
}

func (c *plantCase) netavarkInput() []byte {
	b, _ := json.Marshal(map[string]any{
		"container_id":  c.cid,
		"port_mappings": []map[string]any{{"container_port": 80, "host_ip": "", "host_port": c.port, "protocol": "tcp", "range": 1}},
		"network": map[string]any{"name": c.network, "driver": "passt-portmap",
			"options": map[string]string{"pasta": c.pasta, "dataDir": c.dataDir, "timeout": plantTimeout.String()}},
		"network_options": map[string]any{"interface_name": "eth0"},
	})
	return b
}

// run runs the plugin binary once (CNI when verb is a CNI command, else
// with args) and returns whether it succeeded and its error message.
func (c *plantCase) run(verb string, args []string, stdin []byte) (ok bool, code int, msg string, took time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = os.Environ()
	if args == nil {
		cmd.Env = append(cmd.Env, "CNI_COMMAND="+verb, "CNI_CONTAINERID="+c.cid, "CNI_NETNS="+c.ns.Path, "CNI_IFNAME=eth0", "CNI_PATH="+filepath.Dir(c.bin))
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	if err == nil {
		return true, 0, "", took
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	var e struct {
		Code    int    `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(stdout.Bytes(), &e)
	if e.Code != 0 {
		code = e.Code
	}
	msg = strings.TrimSpace(e.Msg + "; " + e.Details + e.Error + " " + stderr.String())
	return false, code, msg, took
}

// verbs runs every verb of both front ends and "show", checking that
// none waits past the timeout and that a refusal names the planted path.
func (c *plantCase) verbs(planted string) {
	c.t.Helper()
	fwd := forwarder.Paths(attachmentDir(c.dataDir, c.network, c.cid, "eth0"))
	type verb struct {
		name  string
		args  []string
		stdin []byte
	}
	vs := []verb{
		{"ADD", nil, c.cniConf("")},
		{"CHECK", nil, c.cniConf("")},
		{"STATUS", nil, c.cniConf("")},
		{"ADD", nil, c.cniConf("")},
		{"DEL", nil, c.cniConf("")},
		{"GC", nil, c.cniConf(`,"cni.dev/valid-attachments":[]`)},
	}
	if c.fwd == nil {
		vs = append(vs, verb{"netavark setup", []string{"setup", c.ns.Path}, c.netavarkInput()},
			verb{"netavark teardown", []string{"teardown", c.ns.Path}, c.netavarkInput()},
			verb{"show", []string{"show", fwd.Socket, fwd.PIDFile}, nil})
	} else {
		vs = append(vs, verb{"show", []string{"show", c.fwd.Socket, c.fwd.PIDFile}, nil})
	}
	for _, v := range vs {
		ok, code, msg, took := c.run(v.name, v.args, v.stdin)
		outcome := "ok"
		if !ok {
			outcome = fmt.Sprintf("%d", code)
		}
		c.outcomes = append(c.outcomes, v.name+" "+outcome)
		if took > 2*plantTimeout+2*time.Second {
			c.t.Errorf("%s took %v with a timeout of %v", v.name, took, plantTimeout)
		}
		if !ok && code == 5 && !strings.Contains(msg, planted) {
			c.t.Errorf("%s refused (5) without naming %s: %s", v.name, planted, msg)
		}
	}
}

// killLeft kills the pastas of this case's data directory that still
// run (a verb refused to stop one): by their PID files, wherever they
// are in dataDir.
func (c *plantCase) killLeft() {
	_ = filepath.WalkDir(c.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != forwarder.PIDFileName || !d.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmd, []byte(c.dataDir)) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// eachPlant runs, as parallel subtests, run for every phase (before the
// first ADD, while an attachment is live), every path of paths (its
// index i) and every kind of plant that can stand there.
func eachPlant(t *testing.T, paths []plantPath, run func(t *testing.T, phase string, i int, k plantKind)) {
	for _, phase := range []string{"before ADD", "while live"} {
		for i, p := range paths {
			for _, k := range plantKinds {
				if p.dir && !k.files {
					continue
				}
				if phase == "while live" && !livePlant(p.rel) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s", phase, p.rel, k.name), func(t *testing.T) {
					t.Parallel()
					run(t, phase, i, k)
				})
			}
		}
	}
}

// plantAndClean plants k at p (prepared for phase), runs every verb,
// then removes the plant and runs DEL, which must succeed; cleaned, when
// not nil, checks more after that DEL. Nothing outside dataDir may
// change through it all.
func (c *plantCase) plantAndClean(phase string, p plantPath, k plantKind, cleaned func()) {
	t := c.t
	o := newOutside(t)
	before := o.digest(t)
	planted := filepath.Join(c.dataDir, p.rel)
	c.prepare(phase, p)
	if err := k.plant(planted, o); err != nil {
		t.Fatalf("plant at %s: %v", planted, err)
	}
	c.verbs(planted)
	if after := o.digest(t); after != before {
		t.Errorf("the tree outside dataDir changed")
	}
	c.unplant(phase, p, planted)
	if ok, code, msg, _ := c.run("DEL", nil, c.cniConf("")); !ok {
		t.Errorf("DEL once the plant is gone: %d %s", code, msg)
	}
	if cleaned != nil {
		cleaned()
	}
	if after := o.digest(t); after != before {
		t.Errorf("the tree outside dataDir changed by the cleanup")
	}
	t.Logf("%s", strings.Join(c.outcomes, ", "))
}

// TestPlantedPaths is the class test (see the top of this file).
func TestPlantedPaths(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	bin := pluginBinary(t)
	const network = "pp-plant"
	eachPlant(t, plantPaths(network, "pp-plant-c"), func(t *testing.T, phase string, i int, k plantKind) {
		c := &plantCase{t: t, bin: bin, pasta: pasta, dataDir: pastatest.TempDir(t, "pp-pl-"), ns: pastatest.NewNetNS(t),
			network: network, cid: fmt.Sprintf("pp-plant-c%d", i), port: pastatest.FreePort(t, "tcp")}
		t.Cleanup(c.killLeft)
		// The attachment's own paths: the case's container ID.
		c.plantAndClean(phase, plantPaths(network, c.cid)[i], k, nil)
	})
}

// TestPlantedQueuePaths is the class test (see the top of this file) for
// the queue of a forwarder started elsewhere: one real pasta, the
// forwarder of every case (each its own data directory and port).
func TestPlantedQueuePaths(t *testing.T) {
	pasta, _ := pastatest.Bins(t)
	bin := pluginBinary(t)
	f := pastatest.Start(t)
	const network = "pp-plantq"
	eachPlant(t, queuePaths(f.Socket), func(t *testing.T, phase string, i int, k plantKind) {
		c := &plantCase{t: t, bin: bin, pasta: pasta, dataDir: pastatest.TempDir(t, "pp-plq-"), ns: f.NS, fwd: f,
			network: network, cid: fmt.Sprintf("pp-plantq-c%d", i), port: pastatest.FreePort(t, "tcp")}
		c.plantAndClean(phase, queuePaths(f.Socket)[i], k, func() {
			// Once it is gone an ADD works, and DEL takes its rule out.
			if ok, code, msg, _ := c.run("ADD", nil, c.cniConf("")); !ok {
				t.Errorf("ADD once the plant is gone: %d %s", code, msg)
			}
			if ok, code, msg, _ := c.run("DEL", nil, c.cniConf("")); !ok {
				t.Errorf("DEL after it: %d %s", code, msg)
			}
			// Through a client that waits its turn: the cases share
			// the forwarder, which serves one client at a time.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			snap, err := (&ctlclient.Client{Path: f.Socket}).Read(ctx)
			cancel()
			if err != nil {
				t.Fatalf("read the forwarder's tables: %v", err)
			}
			for _, r := range snap.Tables.Lookup(wire.PifHost).Rules {
				if r.First <= c.port && c.port <= r.Last {
					t.Errorf("the forwarder holds %s on this case's port after the last DEL", r)
				}
			}
		})
	})
}

// livePlant says whether a path is planted over a live attachment too:
// every path but the temporary and probe files, which exist only during
// a write.
func livePlant(rel string) bool {
	return !strings.Contains(rel, ".tmp-") && !strings.Contains(rel, ".probe-")
}

// prepare makes the state a plant goes into: before ADD, the directories
// a past ADD and DEL leave (records/NETWORK/, forwarders/, and, for a
// path inside it, an empty attachment directory); while live, an
// attachment that ADD made, whose entry at the path is moved aside
// within dataDir.
func (c *plantCase) prepare(phase string, p plantPath) {
	c.t.Helper()
	if ok, code, msg, _ := c.run("ADD", nil, c.cniConf("")); !ok {
		c.t.Fatalf("ADD before planting: %d %s", code, msg)
	}
	planted := filepath.Join(c.dataDir, p.rel)
	if phase == "before ADD" {
		if ok, code, msg, _ := c.run("DEL", nil, c.cniConf("")); !ok {
			c.t.Fatalf("DEL before planting: %d %s", code, msg)
		}
		if err := os.MkdirAll(filepath.Dir(planted), 0o700); err != nil {
			c.t.Fatal(err)
		}
		if err := os.RemoveAll(planted); err != nil {
			c.t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(planted), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if _, err := os.Lstat(planted); err == nil {
		if err := os.Rename(planted, filepath.Join(c.dataDir, "moved-aside")); err != nil {
			c.t.Fatal(err)
		}
	}
}

// unplant removes the plant and puts back what was moved aside.
func (c *plantCase) unplant(phase string, p plantPath, planted string) {
	c.t.Helper()
	if err := os.RemoveAll(planted); err != nil {
		c.t.Fatal(err)
	}
	aside := filepath.Join(c.dataDir, "moved-aside")
	if _, err := os.Lstat(aside); err == nil {
		if err := os.MkdirAll(filepath.Dir(planted), 0o700); err != nil {
			c.t.Fatal(err)
		}
		if err := os.Rename(aside, planted); err != nil {
			c.t.Fatal(err)
		}
	}
}
