package forwarder

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// The test binary doubles as a fake pasta, so that Ensure, Running and
// Stop are tested without root or the real binary (the real one is in
// integration/managed_test.go). Run with FORWARDER_FAKE_PASTA set, it acts
// like pasta: the foreground process starts a daemon copy of itself with
// the same arguments, writes the daemon's PID to the -P file and exits 0;
// the daemon listens on the -c socket and sends a version 2 hello to
// every client. FORWARDER_FAKE_MODE changes that:
//
//	fail    the foreground prints an error and exits 1
//	die     the daemon exits at once
//	silent  the daemon never listens
//	badpid  the foreground writes nothing to the PID file
//	child   the daemon starts a child of its own in another session
//	        (its PID in child.pid beside the PID file), as a helper
const (
	fakeEnv     = "FORWARDER_FAKE_PASTA"
	fakeModeEnv = "FORWARDER_FAKE_MODE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(fakeEnv) {
	case "foreground":
		os.Exit(fakeForeground())
	case "daemon":
		os.Exit(fakeDaemon())
	}
	os.Exit(m.Run())
}

// fakeArg returns the value of the last "NAME VALUE" in the fake's
// arguments.
func fakeArg(name string) string {
	v := ""
	for i, a := range os.Args {
		if a == name && i+1 < len(os.Args) {
			v = os.Args[i+1]
		}
	}
	return v
}

// fakeDir makes an attachment directory's parent of the test's own (not
// /tmp itself: the parent of an attachment directory must not be
// writable by others) and returns the directory's path, short enough for
// a socket address.
func fakeDir(t testing.TB) string {
	t.Helper()
	parent, err := os.MkdirTemp("/tmp", "fwd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	return filepath.Join(parent, "a")
}

func fakeForeground() int {
	mode := os.Getenv(fakeModeEnv)
	fmt.Println("fake pasta starting")
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "Couldn't open network namespace: fake failure")
		return 1
	}
	pidFile := fakeArg("-P")
	f, err := os.OpenFile(pidFile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 1
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), fakeEnv+"=daemon")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode != "badpid" {
		fmt.Fprintf(f, "%d\n", cmd.Process.Pid)
	}
	fmt.Println("DNS:\n    192.0.2.53\nDNS search list:\n    example.org")
	return 0
}

func fakeDaemon() int {
	switch os.Getenv(fakeModeEnv) {
	case "die":
		return 3
	case "silent":
		time.Sleep(time.Minute)
		return 0
	}
	if os.Getenv(fakeModeEnv) == "child" {
		c := exec.Command("sleep", "300")
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			return 1
		}
		os.WriteFile(filepath.Join(filepath.Dir(fakeArg("-P")), "child.pid"), []byte(strconv.Itoa(c.Process.Pid)), 0o600)
	}
	ln, err := net.Listen("unix", fakeArg("-c"))
	if err != nil {
		return 1
	}
	time.AfterFunc(time.Minute, func() { os.Exit(0) }) // never outlive the tests by long
	hello := wire.DefaultHello().Append(nil)
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		c.Write(hello)
		c.Close()
	}
}

// fakeConfig returns a Config running the fake pasta in mode, and stops
// whatever it started when the test ends.
func fakeConfig(t *testing.T, mode string) Config {
	t.Helper()
	t.Setenv(fakeEnv, "foreground")
	t.Setenv(fakeModeEnv, mode)
	dir := fakeDir(t)
	cfg := Config{Pasta: os.Args[0], NetNS: "/run/netns/fake", Dir: dir, Timeout: 5 * time.Second}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		if err := Stop(context.Background(), dir); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return cfg
}

// gone reports whether pid has finished exiting: no longer there, or a
// zombie (its command line empties earlier, while it still exits).
func gone(pid int) bool { return exited(pid, 0) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestEnsureFakeStartReuseStop(t *testing.T) {
	cfg := fakeConfig(t, "")
	inst, err := Ensure(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if !inst.Started || inst.PID <= 0 {
		t.Fatalf("Ensure: %+v, want a started forwarder", inst)
	}
	if pid, ok, err := Running(cfg.Dir); !ok || err != nil || pid != inst.PID {
		t.Fatalf("Running = %d, %v, %v", pid, ok, err)
	}
	again, err := Ensure(t.Context(), cfg)
	if err != nil || again.Started || again.PID != inst.PID {
		t.Fatalf("second Ensure = %+v, %v; want reuse of %d", again, err, inst.PID)
	}

	// The result's DNS comes from the start-up output.
	b, err := os.ReadFile(inst.OutFile)
	if err != nil {
		t.Fatal(err)
	}
	dns := parseStartupDNS(b)
	if len(dns.Nameservers) != 1 || dns.Nameservers[0] != "192.0.2.53" || len(dns.Search) != 1 || dns.Search[0] != "example.org" {
		t.Errorf("DNS from %s = %+v", inst.OutFile, dns)
	}

	if err := Stop(t.Context(), cfg.Dir); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitFor(t, "the fake pasta to exit", func() bool { return gone(inst.PID) })
	for _, p := range []string{inst.Socket, inst.PIDFile} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after Stop: %v", p, err)
		}
	}
	if _, err := os.Stat(inst.OutFile); err != nil {
		t.Errorf("Stop removed the start-up output, which is kept for diagnosis: %v", err)
	}
}

func TestEnsureFakeCrashAndOtherNetns(t *testing.T) {
	cfg := fakeConfig(t, "")
	inst, err := Ensure(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	syscall.Kill(inst.PID, syscall.SIGKILL)
	waitFor(t, "the killed fake pasta to go", func() bool { return gone(inst.PID) })
	if _, ok, err := Running(cfg.Dir); ok || err != nil {
		t.Fatalf("Running after SIGKILL: %v, %v", ok, err)
	}
	second, err := Ensure(t.Context(), cfg)
	if err != nil || !second.Started || second.PID == inst.PID {
		t.Fatalf("Ensure after a crash = %+v, %v; want a new forwarder", second, err)
	}

	// Same attachment, another namespace: replaced, the old one stopped.
	cfg.NetNS = "/run/netns/fake-2"
	third, err := Ensure(t.Context(), cfg)
	if err != nil || !third.Started || third.PID == second.PID {
		t.Fatalf("Ensure for another namespace = %+v, %v; want a new forwarder", third, err)
	}
	waitFor(t, "the forwarder of the old namespace to go", func() bool { return gone(second.PID) })
}

func TestEnsureFakeSocketGoneReplaced(t *testing.T) {
	cfg := fakeConfig(t, "")
	inst, err := Ensure(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := os.Remove(inst.Socket); err != nil {
		t.Fatal(err)
	}
	again, err := Ensure(t.Context(), cfg)
	if err != nil || !again.Started || again.PID == inst.PID {
		t.Fatalf("Ensure after the socket file went = %+v, %v; want a new forwarder", again, err)
	}
	waitFor(t, "the forwarder without a socket to go", func() bool { return gone(inst.PID) })
}

// TestEnsureFakeConcurrent: parallel Ensure calls for one attachment
// start exactly one forwarder (the directory lock serializes them).
func TestEnsureFakeConcurrent(t *testing.T) {
	cfg := fakeConfig(t, "")
	const n = 6
	type res struct {
		inst *Instance
		err  error
	}
	out := make(chan res, n)
	for range n {
		go func() {
			inst, err := Ensure(context.Background(), cfg)
			out <- res{inst, err}
		}()
	}
	started, pids := 0, map[int]bool{}
	for range n {
		r := <-out
		if r.err != nil {
			t.Fatalf("Ensure: %v", r.err)
		}
		if r.inst.Started {
			started++
		}
		pids[r.inst.PID] = true
	}
	if started != 1 || len(pids) != 1 {
		t.Fatalf("%d parallel Ensure calls started %d forwarders, saw PIDs %v; want one", n, started, pids)
	}
}

// BenchmarkEnsureReuse: the cost of Ensure when the forwarder runs (every
// ADD after the first, and every CHECK-like probe).
func BenchmarkEnsureReuse(b *testing.B) {
	b.Setenv(fakeEnv, "foreground")
	b.Setenv(fakeModeEnv, "")
	dir := fakeDir(b)
	cfg := Config{Pasta: os.Args[0], NetNS: "/run/netns/fake", Dir: dir}
	if _, err := Ensure(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	defer Stop(context.Background(), dir)
	for b.Loop() {
		inst, err := Ensure(context.Background(), cfg)
		if err != nil || inst.Started {
			b.Fatalf("Ensure = %+v, %v", inst, err)
		}
	}
}

// TestFakeLostPIDFile: pasta's PID file is not what the plugin goes by
// once a start succeeded: a forwarder whose PID file was removed or
// corrupted is still known by its identity record, reused by Ensure and
// stopped by Stop.
func TestFakeLostPIDFile(t *testing.T) {
	for _, content := range []string{"", "garbage"} {
		t.Run(fmt.Sprintf("%q", content), func(t *testing.T) {
			cfg := fakeConfig(t, "")
			inst, err := Ensure(t.Context(), cfg)
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if content == "" {
				os.Remove(inst.PIDFile)
			} else {
				os.WriteFile(inst.PIDFile, []byte(content), 0o600)
			}
			again, err := Ensure(t.Context(), cfg)
			if err != nil || again.Started || again.PID != inst.PID {
				t.Fatalf("Ensure = %+v, %v; want the forwarder %d reused", again, err, inst.PID)
			}
			if err := Stop(t.Context(), cfg.Dir); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			waitFor(t, "Stop to stop the forwarder by its identity record", func() bool { return gone(inst.PID) })
		})
	}
}

// TestFakeLostIdentity: a forwarder whose identity record was lost (a
// start killed before it wrote it) is found by its PID file, as a process
// of the plugin's uid holding the attachment's control socket: Ensure
// replaces it, Stop stops it. A PID file naming a process that does not
// hold the socket (here: the test itself) is not taken for it.
func TestFakeLostIdentity(t *testing.T) {
	cfg := fakeConfig(t, "")
	inst, err := Ensure(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := os.Remove(inst.IdentFile); err != nil {
		t.Fatal(err)
	}
	if pid, ok, err := Running(cfg.Dir); !ok || err != nil || pid != inst.PID {
		t.Fatalf("Running without the identity record = %d, %v, %v; want %d", pid, ok, err, inst.PID)
	}
	again, err := Ensure(t.Context(), cfg)
	if err != nil || !again.Started || again.PID == inst.PID {
		t.Fatalf("Ensure = %+v, %v; want a new forwarder", again, err)
	}
	waitFor(t, "the forwarder without an identity record to go", func() bool { return gone(inst.PID) })
	if err := os.Remove(again.IdentFile); err != nil {
		t.Fatal(err)
	}
	if err := Stop(t.Context(), cfg.Dir); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitFor(t, "Stop to find the forwarder by its PID file", func() bool { return gone(again.PID) })
}

func TestEnsureFakeFailures(t *testing.T) {
	tests := []struct {
		mode, want string
	}{
		{"fail", "fake failure"},
		{"die", "exited after starting"},
		{"badpid", "wrote no PID"},
		{"silent", "did not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			cfg := fakeConfig(t, tt.mode)
			cfg.Timeout = 2 * time.Second // the race detector slows the fake's start
			start := time.Now()
			inst, err := Ensure(t.Context(), cfg)
			if err == nil {
				t.Fatalf("Ensure = %+v, want an error", inst)
			}
			if !containsAll(err.Error(), tt.want) {
				t.Fatalf("Ensure error %q does not say %q", err, tt.want)
			}
			if d := time.Since(start); d > 3*cfg.Timeout {
				t.Errorf("Ensure took %v with a timeout of %v", d, cfg.Timeout)
			}
			p := Paths(cfg.Dir)
			for _, f := range []string{p.Socket, p.PIDFile, p.IdentFile} {
				if _, err := os.Stat(f); !os.IsNotExist(err) {
					t.Errorf("%s left after a failed start: %v", f, err)
				}
			}
		})
	}
}

func TestEnsureRefusesBadConfig(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 100)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no netns", Config{Dir: "/tmp/x"}, "no network namespace"},
		{"no dir", Config{NetNS: "/n"}, "no attachment directory"},
		{"reserved arg", Config{NetNS: "/n", Dir: "/tmp/x", Args: []string{"-c", "/y"}}, "--conf-path"},
		{"socket path too long", Config{NetNS: "/n", Dir: long}, "at most 107"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Ensure(t.Context(), tt.cfg)
			if err == nil || !containsAll(err.Error(), tt.want) {
				t.Fatalf("Ensure = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(long); !os.IsNotExist(err) {
		t.Errorf("Ensure created %s before refusing it", long)
	}
}

func TestEnsureMissingBinary(t *testing.T) {
	cfg := Config{Pasta: "/nonexistent/pasta", NetNS: "/n", Dir: fakeDir(t)}
	_, err := Ensure(t.Context(), cfg)
	if err == nil || !containsAll(err.Error(), "/nonexistent/pasta") {
		t.Fatalf("Ensure with a missing binary = %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestStopStopsDescendants: what the forwarder forked is stopped with it,
// found through the forwarder (its children), even in another session
// and process group, where no group or name would find it.
func TestStopStopsDescendants(t *testing.T) {
	cfg := fakeConfig(t, "child")
	inst, err := Ensure(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	var child int
	waitFor(t, "the daemon's child", func() bool {
		b, err := os.ReadFile(filepath.Join(cfg.Dir, "child.pid"))
		child, _ = strconv.Atoi(string(b))
		return err == nil && child > 0
	})
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	if err := Stop(t.Context(), cfg.Dir); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitFor(t, "the forwarder to go", func() bool { return gone(inst.PID) })
	waitFor(t, "the forwarder's child to go", func() bool { return gone(child) })
}
