package podman5_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// runEnv names, in the environment of the test binary run inside the
// private mount namespace, the run's directory.
const runEnv = "PP5_RUN_DIR"

// runPrefix starts the name of every run's directory under /tmp and of
// its cgroup.
const runPrefix = "pp-podman5-"

// TestMain runs the tests in a child of this process (the same binary,
// the same arguments) made in a mount namespace of its own and in a
// cgroup of its own:
//
//   - every mount the tests make (the root's overlay, proc, sysfs, /dev,
//     /run...) is in that namespace: the kernel removes them all when the
//     child and everything it started have exited, whatever happened, and
//     the machine's own mount table never holds one;
//   - everything the tests start (Podman, conmon, the containers, the
//     plugin's pastas) is in that cgroup: what is left when the child
//     exits is killed (cgroup.kill) and named, and so is what a killed
//     earlier run left (its directory's owner is gone);
//   - this process is the child subreaper of all of it: the daemons that
//     leave their parent (conmon, pasta) are reaped here rather than left
//     to a PID 1 that may not reap them.
func TestMain(m *testing.M) {
	if os.Getenv(runEnv) != "" {
		code := runtimetest.Main(m, nil)
		if sid != nil {
			if err := sid.unmount(); err != nil {
				fmt.Fprintf(os.Stderr, "podman5: unmount: %v\n", err)
				code = 1
			}
		}
		os.Exit(code)
	}
	os.Exit(supervise())
}

// cgroupRoot is where the machine's cgroup v2 hierarchy is mounted: the
// unified one of a hybrid host, or /sys/fs/cgroup itself.
func cgroupRoot() (string, error) {
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err == nil {
				return d, nil
			}
		}
	}
	return "", errors.New("no cgroup v2 hierarchy under /sys/fs/cgroup (the Podman 5 root needs one for crun)")
}

// supervise sweeps what killed earlier runs left, makes this run's
// directory and cgroup, runs the tests in the child, and removes both.
func supervise() int {
	cgRoot, err := cgroupRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "podman5:", err)
		return 1
	}
	// A run killed before it could release (go test's timeout kills
	// without cleanup) leaves its cgroup and directory: the sweep frees
	// them once their owner is gone.
	runtimetest.Sweep(map[string]runtimetest.Sweeper{runPrefix: func(dir string) error {
		return releaseCgroup(filepath.Join(cgRoot, filepath.Base(dir)))
	}})
	dir, err := runtimetest.OwnedDir(runPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podman5:", err)
		return 1
	}
	cg := filepath.Join(cgRoot, filepath.Base(dir))
	code := run(dir, cg)
	if err := release(dir, cg); err != nil {
		fmt.Fprintln(os.Stderr, "podman5:", err)
		code = 1
	}
	reapLeft()
	return code
}

// run runs the tests in the child, in cgroup cg and a new mount
// namespace, and returns its exit status.
func run(dir, cg string) int {
	if err := os.Mkdir(cg, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "podman5: make the run's cgroup:", err)
		return 1
	}
	cgfd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podman5:", err)
		return 1
	}
	defer syscall.Close(cgfd)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "podman5: become the subreaper:", err)
		return 1
	}
	// Pdeathsig belongs to the thread that starts the child: keep this
	// goroutine on it until the child is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// The binary by its name, not /proc/self/exe: the tests look for
	// their process by its name (podman5.test) among port holders.
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "podman5:", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), runEnv+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	// Go makes every mount of the new namespace private (MS_REC) before
	// the child runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, UseCgroupFD: true, CgroupFD: cgfd, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "podman5: start the tests:", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	done := make(chan unix.WaitStatus, 1)
	go reap(cmd.Process.Pid, done)
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case ws := <-done:
			if !ws.Exited() {
				fmt.Fprintf(os.Stderr, "podman5: the tests ended by signal %v\n", ws.Signal())
				return 1
			}
			return ws.ExitStatus()
		}
	}
}

// reap waits for every child of this process, the tests' (pid) and the
// orphans it is the subreaper of, and sends the tests' status to done.
// It returns when no child is left.
func reap(pid int, done chan<- unix.WaitStatus) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		if got == pid {
			done <- ws
		}
	}
}

// reapLeft reaps what release killed: children of this process (as the
// subreaper) that are gone, and waits up to a few seconds for the
// others.
func reapLeft() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR) || got > 0:
		case err != nil || time.Now().After(deadline):
			return // no child left, or one that will not die
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// release frees the run's cgroup cg (see releaseCgroup) and then removes
// the run's directory: with every process of the run gone, so is its
// mount namespace, and nothing is mounted under dir.
func release(dir, cg string) error {
	if err := releaseCgroup(cg); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// releaseCgroup kills what is left in cgroup cg (and below it) and
// removes the cgroups.
func releaseCgroup(cg string) error {
	left, err := killCgroup(cg)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "podman5: killed what the run left running in %s: %s\n", cg, strings.Join(left, ", "))
	}
	return removeCgroups(cg)
}

// killCgroup kills every process of cg and its descendants and waits
// until they are gone. It returns the processes it found ("comm (pid)").
func killCgroup(cg string) ([]string, error) {
	if _, err := os.Stat(cg); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var left []string
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile(filepath.Join("/proc", f, "comm"))
			left = append(left, fmt.Sprintf("%s (%s)", strings.TrimSpace(string(comm)), f))
		}
		return nil
	})
	if len(left) == 0 {
		return nil, nil
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0o644); err != nil {
		return left, fmt.Errorf("kill the processes of %s: %w", cg, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(cg, "cgroup.events"))
		if err != nil || strings.Contains(string(b), "populated 0") {
			return left, nil
		}
		if time.Now().After(deadline) {
			return left, fmt.Errorf("processes of %s still run 30s after cgroup.kill", cg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroups removes cg and the cgroups below it, deepest first.
func removeCgroups(cg string) error {
	var dirs []string
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// TestSupervisor: the tests run in a mount namespace and a cgroup of
// their own, not in those of the process that started them.
func TestSupervisor(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil {
		t.Fatal(err)
	}
	if self == parent {
		t.Fatalf("the tests run in the mount namespace of the process that started them, %s", self)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	want := "0::/" + filepath.Base(os.Getenv(runEnv))
	if !strings.Contains(string(b), want+"\n") {
		t.Fatalf("the tests run in cgroups %q, want %q", b, want)
	}
}
