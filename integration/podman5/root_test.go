package podman5_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// rootEnv names the Debian unstable root with Podman 5 that
// scripts/sidroot.sh made (scripts/test.sh exports it).
const rootEnv = "PODMAN5_ROOT"

// sidRoot is the run's Podman 5 machine: an overlay whose lower layer is
// the cached root (never written) and whose upper layer is the run's, with
// the mounts Podman, crun and pasta need, all in the test binary's own
// mount namespace (see TestMain).
type sidRoot struct {
	dir    string   // the run's directory
	lower  string   // the cached root
	merged string   // the root the tests run Podman in
	mounts []string // made, in order
}

var (
	sidOnce sync.Once
	sid     *sidRoot
	sidErr  error
)

// root returns the run's root, made on first use. A root that cannot be
// made fails the test: the Podman 5 tests never skip.
func root(t testing.TB) *sidRoot {
	t.Helper()
	sidOnce.Do(func() { sid, sidErr = makeRoot() })
	if sidErr != nil {
		t.Fatalf("the Podman 5 root: %v", sidErr)
	}
	return sid
}

func makeRoot() (*sidRoot, error) {
	lower := os.Getenv(rootEnv)
	if lower == "" {
		return nil, fmt.Errorf("%s is not set: run scripts/test.sh, or export %s=$(scripts/sidroot.sh | tail -n1)", rootEnv, rootEnv)
	}
	if _, err := os.Stat(filepath.Join(lower, "usr/bin/podman")); err != nil {
		return nil, fmt.Errorf("%s=%s holds no Podman (%v): scripts/sidroot.sh makes it", rootEnv, lower, err)
	}
	dir := os.Getenv(runEnv)
	r := &sidRoot{dir: dir, lower: lower, merged: filepath.Join(dir, "merged")}
	if err := r.mount(); err != nil {
		if uerr := r.unmount(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	if err := r.configure(); err != nil {
		return nil, err
	}
	return r, nil
}

// hold keeps scripts/sidroot.sh from making the cached root again while
// this run uses it (it takes the lock exclusively only to rebuild).
func (r *sidRoot) hold() error {
	f, err := os.Open(filepath.Join(filepath.Dir(r.lower), "lock"))
	if err != nil {
		return fmt.Errorf("the root's lock: %w", err)
	}
	// Held until the process exits.
	return syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
}

// mount makes the overlay and the mounts inside it, as a machine would
// have them: proc, sysfs with the cgroup v2 hierarchy as /sys/fs/cgroup
// (this host may be a cgroup v1 hybrid: crun then runs with cgroup v2 and
// no controllers, hence pids_limit = 0), the machine's /dev with a /dev/shm
// of its own (Podman keeps its lock file libpod_lock there: the machine's
// Podman must not share it), a tmpfs /run and /tmp, and Podman's storage
// on the machine's file system (container storage cannot be on overlayfs).
func (r *sidRoot) mount() error {
	if err := r.hold(); err != nil {
		return err
	}
	for _, d := range []string{"upper", "work", "merged", "storage"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			return err
		}
	}
	cg, err := cgroupRoot()
	if err != nil {
		return err
	}
	m := r.merged
	steps := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"overlay", m, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", r.lower, filepath.Join(r.dir, "upper"), filepath.Join(r.dir, "work"))},
		{"proc", m + "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", m + "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{cg, m + "/sys/fs/cgroup", "", unix.MS_BIND, ""},
		{"/dev", m + "/dev", "", unix.MS_BIND | unix.MS_REC, ""},
		{"shm", m + "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"run", m + "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=755"},
		{"tmp", m + "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{filepath.Join(r.dir, "storage"), m + "/var/lib/containers", "", unix.MS_BIND, ""},
	}
	for _, s := range steps {
		if s.fstype != "overlay" {
			if err := os.MkdirAll(s.dst, 0o755); err != nil {
				return err
			}
		}
		if err := unix.Mount(s.src, s.dst, s.fstype, s.flags, s.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", s.src, s.dst, err)
		}
		r.mounts = append(r.mounts, s.dst)
	}
	return nil
}

// bind binds src onto dst inside the root (made if missing, as a file when
// src is one), unmounted with the rest.
func (r *sidRoot) bind(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	dst = filepath.Join(r.merged, dst)
	if fi.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else if _, serr := os.Stat(dst); errors.Is(serr, os.ErrNotExist) {
		err = os.WriteFile(dst, nil, 0o644)
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	r.mounts = append(r.mounts, dst)
	return nil
}

// unmount undoes the mounts, the last first. /dev was bound with its
// submounts: it goes with MNT_DETACH.
func (r *sidRoot) unmount() error {
	var errs []error
	for i := len(r.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(r.mounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", r.mounts[i], err))
		}
	}
	r.mounts = nil
	return errors.Join(errs...)
}

// The Podman settings every test shares, as a containers.conf drop-in.
// The containers make no cgroups of their own: they stay in conmon's, in
// the run's cgroup, so that nothing of the run can outlive it (see
// TestMain); on this hybrid host crun would have cgroup v2 without
// controllers anyway (see mount), hence also pids_limit = 0.
const baseConf = `[containers]
cgroups = "disabled"
pids_limit = 0

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
`

// configure writes the root's own files: resolv.conf, Podman's settings.
func (r *sidRoot) configure() error {
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return err
	}
	for path, content := range map[string]string{
		"/etc/resolv.conf": string(resolv),
		"/etc/containers/containers.conf.d/10-test.conf": baseConf,
	} {
		if err := r.write(path, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// write writes a file inside the root (in the run's upper layer).
func (r *sidRoot) write(path, content string, mode os.FileMode) error {
	p := filepath.Join(r.merged, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), mode)
}

// path is a path inside the root, as this process sees it.
func (r *sidRoot) path(p string) string { return filepath.Join(r.merged, p) }

// env is the environment of the commands run in the root.
var env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}

// chroot runs a command as root in the root (chroot: rootful Podman needs
// no more).
func (r *sidRoot) chroot(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "chroot", append([]string{r.merged}, args...)...)
	cmd.Env = env
	return output(cmd)
}

// output runs cmd and returns its output, stdout then stderr, trimmed.
func output(cmd *exec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// image is the test image in each Podman's storage.
const image = "localhost/pp5:latest"

var (
	tarOnce sync.Once
	tarErr  error
)

// imageTar writes the test image's root file system as a tarball into the
// root's /tmp once: a static busybox (httpd) and the project's static
// udpecho (runtimetest.Rootfs), imported by each Podman with podman import.
func (r *sidRoot) imageTar(t testing.TB) string {
	t.Helper()
	const inRoot = "/tmp/pp5-image.tar"
	tarOnce.Do(func() {
		fs := filepath.Join(r.dir, "image")
		runtimetest.Rootfs(t, fs)
		out, err := exec.Command("tar", "-C", fs, "-cf", r.path(inRoot), ".").CombinedOutput()
		if err != nil {
			tarErr = fmt.Errorf("tar: %v: %s", err, out)
			return
		}
		tarErr = os.Chmod(r.path(inRoot), 0o644)
	})
	if tarErr != nil {
		t.Fatal(tarErr)
	}
	return inRoot
}

// installPlugin copies the freshly built plugin into the root as the
// netavark driver passt-portmap, where Podman looks without any setting.
func (r *sidRoot) installPlugin(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(runtimetest.Plugin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.write(pluginPath, string(b), 0o755); err != nil {
		t.Fatal(err)
	}
}

// pluginPath is the driver's file in the root: a netavark plugin
// directory Podman 5 searches by default.
const pluginPath = "/usr/libexec/netavark/passt-portmap"
