package podman_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// rootless is a Podman run by a user the test creates: subordinate ids
// from useradd, read and write access to /dev/net/tun for slirp4netns,
// everything of it in one directory the user owns. All of it (processes,
// user, access) is undone when the test ends.
type rootless struct {
	t                testing.TB
	name             string
	uid, gid         int
	dir, conf, pasta string
	pluginDir        string
	dataDir          string
}

func newRootless(t testing.TB) *rootless {
	t.Helper()
	runtimetest.Require(t, "podman", "useradd", "userdel", "runuser", "setfacl", "newuidmap", "slirp4netns")
	var b [3]byte
	_, _ = rand.Read(b[:])
	r := &rootless{t: t, name: "pprl" + hex.EncodeToString(b[:])}
	r.dir = runtimetest.ShortDir(t, "pmrl-")
	if out, err := exec.Command("useradd", "--no-create-home", "--home-dir", r.dir, "--shell", "/bin/sh", r.name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { r.remove(t.Errorf) })
	if err := os.WriteFile(filepath.Join(r.dir, userFile), []byte(r.name), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup(r.name)
	if err != nil {
		t.Fatal(err)
	}
	r.uid, _ = strconv.Atoi(u.Uid)
	r.gid, _ = strconv.Atoi(u.Gid)
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), r.name+":") {
			// useradd assigns ranges where login.defs says so (Debian's
			// default); give one past every range in use otherwise.
			start := 100000
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Split(l, ":"); len(f) == 3 {
					s, _ := strconv.Atoi(f[1])
					n, _ := strconv.Atoi(f[2])
					start = max(start, s+n)
				}
			}
			flag := "--add-subuids"
			if f == "/etc/subgid" {
				flag = "--add-subgids"
			}
			if out, err := exec.Command("usermod", flag, fmt.Sprintf("%d-%d", start, start+65535), r.name).CombinedOutput(); err != nil {
				t.Fatalf("usermod %s: %v: %s", flag, err, out)
			}
		}
	}
	// slirp4netns opens /dev/net/tun, which is root's alone here.
	if out, err := exec.Command("setfacl", "-m", fmt.Sprintf("u:%d:rw", r.uid), "/dev/net/tun").CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v: %s", err, out)
	}

	// The plugin, pasta and data directory where the user reaches them.
	r.pluginDir = runtimetest.PluginDir(t)
	r.pasta = r.userPasta()
	// No dataDir in the configuration: the default for a plugin that runs
	// rootless, under the user's XDG_RUNTIME_DIR (see run).
	r.dataDir = filepath.Join(r.dir, "run", "passt-portmap")
	r.conf = filepath.Join(r.dir, "containers.conf")
	netDir := filepath.Join(r.dir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [%q, \"/usr/lib/cni\"]\nnetwork_config_dir = %q\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
		r.pluginDir, netDir)
	if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	list := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "pp", "plugins": [{"type": %q, "pasta": %q, "timeout": "20s", "capabilities": {"portMappings": true}}]}`,
		runtimetest.PluginName, r.pasta)
	if err := os.WriteFile(filepath.Join(netDir, "pp.conflist"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(r.dir, "rootfs")
	runtimetest.Rootfs(t, root)
	tarball := filepath.Join(r.dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	for _, d := range []string{r.dir, r.pluginDir} {
		if err := filepath.Walk(d, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, r.uid, r.gid)
		}); err != nil {
			t.Fatal(err)
		}
	}
	r.must("import", "--quiet", tarball, image)
	return r
}

// userPasta returns a pasta the user can run: scripts/fetch-pasta.sh's
// wrapper runs unstable's pasta from under /root, which the user cannot
// read, so that tree is copied into the test directory.
func (r *rootless) userPasta() string {
	t := r.t
	t.Helper()
	pasta := runtimetest.Pasta(t)
	b, err := os.ReadFile(pasta)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Dir(filepath.Dir(pasta))
	if !strings.HasPrefix(string(b), "#!") || !strings.Contains(string(b), cache+"/root") {
		return pasta // a binary, or a wrapper that needs no copy
	}
	copyDir := filepath.Join(r.dir, "pasta")
	if err := os.MkdirAll(copyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(cache, "root"), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("copy pasta: %v: %s", err, out)
	}
	wrapper := filepath.Join(copyDir, "pasta")
	if err := os.WriteFile(wrapper, []byte(strings.ReplaceAll(string(b), cache+"/root", copyDir+"/root")), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// run runs podman as the user.
func (r *rootless) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	full := append([]string{"-u", r.name, "--", "env", "HOME=" + r.dir, "XDG_RUNTIME_DIR=" + filepath.Join(r.dir, "run"),
		"CONTAINERS_CONF=" + r.conf, "PATH=" + os.Getenv("PATH"),
		// vfs: the same storage whether or not fuse-overlayfs (a Podman
		// recommendation CI does not install) is there; the image is small.
		"podman", "--storage-driver", "vfs", "--root", filepath.Join(r.dir, "root"), "--runroot", filepath.Join(r.dir, "runroot"),
		"--tmpdir", filepath.Join(r.dir, "tmp")}, args...)
	cmd := exec.CommandContext(ctx, "runuser", full...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (r *rootless) must(args ...string) string {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Join(r.dir, "run"), 0o700); err == nil {
		_ = os.Chown(filepath.Join(r.dir, "run"), r.uid, r.gid)
	}
	out, err := r.run(args...)
	if err != nil {
		r.t.Fatalf("podman (as %s) %s: %v: %s", r.name, strings.Join(args, " "), err, out)
	}
	return out
}

// userFile, in the test directory, names the test user, for sweepRootless.
const userFile = ".user"

// remove undoes everything: containers and storage, the user's remaining
// processes (Podman's pause process, slirp4netns), /dev/net/tun access
// and the user. Failures go to errorf.
func (r *rootless) remove(errorf func(string, ...any)) {
	if r.uid != 0 {
		if out, err := r.run("rm", "--all", "--force", "--time", "0"); err != nil {
			errorf("cleanup: podman rm: %v: %s", err, out)
		}
		if out, err := r.run("system", "reset", "--force"); err != nil {
			errorf("cleanup: podman system reset: %v: %s", err, out)
		}
		for _, pid := range r.processes() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for deadline := time.Now().Add(5 * time.Second); len(r.processes()) > 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if out, err := exec.Command("setfacl", "-x", fmt.Sprintf("u:%d", r.uid), "/dev/net/tun").CombinedOutput(); err != nil {
			errorf("cleanup: setfacl -x: %v: %s", err, out)
		}
		// Drop the mask entry setfacl added when no named entry is left.
		if out, err := exec.Command("getfacl", "-c", "/dev/net/tun").Output(); err == nil && !namedACL(string(out)) {
			_ = exec.Command("setfacl", "-b", "/dev/net/tun").Run()
		}
	}
	if out, err := exec.Command("userdel", r.name).CombinedOutput(); err != nil {
		errorf("cleanup: userdel %s: %v: %s", r.name, err, out)
	}
}

// namedACL reports whether getfacl's output holds an entry for a named
// user or group ("user:NAME:rw-"), beyond the owner's, group's and mask.
func namedACL(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, ":"); len(f) == 3 && (f[0] == "user" || f[0] == "group") && f[1] != "" {
			return true
		}
	}
	return false
}

// processes returns the PIDs of the user's live processes (zombies left
// out: they are gone but for their parent's wait).
func (r *rootless) processes() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name()), &st) != nil || int(st.Uid) != r.uid {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && len(b) > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// TestPodmanRootless: rootless Podman 4.3.1 with a CNI network runs the
// plugin inside its rootless network namespace, where the managed pasta
// binds the published host port; Podman's rootlessport holds the port on
// the host and forwards into that namespace. TCP and UDP answer on
// 127.0.0.1 and [::1]; after "podman rm" no pasta or record is left.
// The configuration names no dataDir: the plugin's records go under the
// user's XDG_RUNTIME_DIR. Port reservation does not apply rootless: the
// plugin does not refuse.
func TestPodmanRootless(t *testing.T) {
	r := newRootless(t)
	tcp, udp := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "udp")
	r.must(runArgs("web", "pp", "-p", fmt.Sprintf("%d:80", tcp), "-p", fmt.Sprintf("%d:5353/udp", udp))...)
	for _, ip := range []string{"127.0.0.1", "::1"} {
		runtimetest.MustGet(t, runtimetest.Addr(ip, tcp), runtimetest.Page(80))
		runtimetest.MustEcho(t, runtimetest.Addr(ip, udp), 5353)
	}
	pastas := runtimetest.ProcessesWith(r.dataDir)
	if len(pastas) != 1 {
		t.Fatalf("processes naming the data directory: %v, want the one managed pasta", pastas)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", pastas[0]), &st); err != nil || int(st.Uid) != r.uid {
		t.Errorf("managed pasta runs as uid %d (%v), want the user's %d", st.Uid, err, r.uid)
	}
	r.must("rm", "--force", "--time", "0", "web")
	runtimetest.NothingLeft(t, r.dataDir)
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", tcp), runtimetest.Page(80))
}

// sweepRootless undoes what a killed run left of a rootless set-up in dir.
func sweepRootless(dir string) error {
	name, err := os.ReadFile(filepath.Join(dir, userFile))
	if err != nil {
		return nil // killed before the user was made
	}
	r := &rootless{name: string(name), dir: dir, conf: filepath.Join(dir, "containers.conf")}
	u, err := user.Lookup(r.name)
	if err != nil {
		return nil // the user, and with it what it ran, is gone
	}
	r.uid, _ = strconv.Atoi(u.Uid)
	r.gid, _ = strconv.Atoi(u.Gid)
	var errs []string
	r.remove(func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) })
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
