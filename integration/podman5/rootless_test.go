package podman5_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// rootlessUser is a user of the root (useradd -m, which gives it
// subordinate ids) who runs Podman rootless.
type rootlessUser struct {
	r        *sidRoot
	name     string
	uid, gid int
}

// userConf is the user's containers.conf: without systemd, cgroups are
// not the user's to manage, and events go to a file.
const userConf = `[containers]
cgroups = "disabled"
pids_limit = 0

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
`

// oldRoot is where a rootless command's mount namespace puts the
// machine's root before it lets go of it.
const oldRoot = "/.pp5-oldroot"

var (
	userOnce sync.Once
	theUser  *rootlessUser
	userErr  error
)

// rootlessPodman is the root's Podman run by its user, made on first use:
// the user, their runtime directory (as a login would make it), their
// containers.conf and storage, /dev/net/tun they may open, the plugin and
// the test image.
func rootlessPodman(t testing.TB) *podman {
	t.Helper()
	r := root(t)
	userOnce.Do(func() { theUser, userErr = r.addUser("ppuser") })
	if userErr != nil {
		t.Fatalf("the rootless user: %v", userErr)
	}
	r.installPlugin(t)
	p := &podman{t: t, r: r, u: theUser}
	t.Cleanup(func() {
		// After the test's own cleanups: stops the user's pause process
		// (and with it Podman's rootless network namespace).
		if out, err := p.run("system", "migrate"); err != nil {
			t.Errorf("cleanup: podman system migrate: %v: %s", err, out)
		}
	})
	p.importImage()
	return p
}

func (r *sidRoot) addUser(name string) (*rootlessUser, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	if out, err := r.chroot(ctx, "useradd", "--create-home", "--shell", "/bin/sh", name); err != nil {
		return nil, fmt.Errorf("useradd: %v: %s", err, out)
	}
	u := &rootlessUser{r: r, name: name}
	for _, id := range []struct {
		flag string
		v    *int
	}{{"-u", &u.uid}, {"-g", &u.gid}} {
		out, err := r.chroot(ctx, "id", id.flag, name)
		if err != nil {
			return nil, fmt.Errorf("id %s %s: %v: %s", id.flag, name, err, out)
		}
		if *id.v, err = strconv.Atoi(out); err != nil {
			return nil, fmt.Errorf("id %s %s: %q", id.flag, name, out)
		}
	}
	home := "/home/" + name
	// The storage is on the machine's file system: a rootless overlay
	// cannot be on overlayfs.
	storage := filepath.Join(r.dir, "user-storage")
	if err := os.MkdirAll(r.path("/run/user"), 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{storage, r.path(home + "/.local/share/containers"), r.path(home + "/.config/containers"),
		r.path(fmt.Sprintf("/run/user/%d", u.uid))} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := r.write(home+"/.config/containers/containers.conf", userConf, 0o644); err != nil {
		return nil, err
	}
	if err := r.bind(storage, home+"/.local/share/containers"); err != nil {
		return nil, err
	}
	for _, d := range []string{storage, r.path(home + "/.local"), r.path(home + "/.local/share"), r.path(home + "/.config"),
		r.path(home + "/.config/containers"), r.path(home + "/.config/containers/containers.conf"), r.path(fmt.Sprintf("/run/user/%d", u.uid))} {
		if err := os.Chown(d, u.uid, u.gid); err != nil {
			return nil, err
		}
	}
	// The machine's /dev/net/tun is root's alone: a node the user may
	// open, bound over it in the root only (pasta needs it).
	tun := filepath.Join(r.dir, "tun")
	if err := unix.Mknod(tun, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		return nil, fmt.Errorf("mknod %s: %w", tun, err)
	}
	if err := os.Chmod(tun, 0o666); err != nil {
		return nil, err
	}
	if err := r.bind(tun, "/dev/net/tun"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(r.path(oldRoot), 0o700); err != nil {
		return nil, err
	}
	return u, nil
}

// enterScript runs a command as the user in the root: in a new mount
// namespace, pivot_root into the root (a chrooted process may not make
// user namespaces) and let go of the machine's root, then drop to the
// user with a login's environment and runtime directory. $1 is the root,
// $2 the user, $3 their runtime directory, the command follows.
const enterScript = `set -e
cd "$1"
pivot_root . "./` + oldRoot + `"
umount -l "` + oldRoot + `"
cd /
user=$2 xdg=$3
shift 3
exec setpriv --reuid="$user" --regid="$user" --init-groups --reset-env env XDG_RUNTIME_DIR="$xdg" "$@"
`

// run runs a command as the user in the root.
func (u *rootlessUser) run(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", enterScript, "sh",
		u.r.merged, u.name, fmt.Sprintf("/run/user/%d", u.uid)}, args...)
	cmd := exec.CommandContext(ctx, "unshare", full...)
	cmd.Env = env
	return output(cmd)
}

// TestRootless: rootless Podman 5 with a network of the driver and no
// option at all: the data directory defaults to the user's runtime
// directory; rootlessport forwards the published ports (TCP and UDP, on
// 127.0.0.1 and [::1]) straight to the container's address, and the
// plugin, which sees that it runs under rootless Podman, binds none of
// them: its forwarder gives the container its network and holds no rule.
// Nothing is left after rm.
func TestRootless(t *testing.T) {
	p := rootlessPodman(t)
	p.network("pp5rl", "passt-portmap")
	web, echo := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "udp")
	p.must(p.runArgs("rl1", "pp5rl", "-p", fmt.Sprintf("%d:80", web), "-p", fmt.Sprintf("%d:5353/udp", echo))...)
	for _, ip := range []string{"127.0.0.1", "::1"} {
		runtimetest.MustGet(t, runtimetest.Addr(ip, web), runtimetest.Page(80))
		runtimetest.MustEcho(t, runtimetest.Addr(ip, echo), 5353)
	}
	recs := p.records("pp5rl")
	if len(recs) != 1 {
		t.Fatalf("records under the default rootless data directory %s: %v", p.dataDir(), recs)
	}
	for name, rec := range recs {
		if !rec.Managed || len(rec.Rules) != 0 {
			t.Errorf("record %s: %+v; want a managed forwarder that holds no rule", name, rec)
		}
		// What the user sees in the rootless network namespace.
		show, err := p.run("unshare", "--rootless-netns", pluginPath, "show", rec.Socket)
		if err != nil || !strings.Contains(show, "HOST (pif") || !strings.Contains(show, "0 rule(s)") {
			t.Errorf("passt-portmap show %s: %v:\n%s", rec.Socket, err, show)
		}
	}
	if n := len(p.forwarders()); n != 1 {
		t.Errorf("%d pastas of the plugin for one container", n)
	}
	p.must("restart", "--time", "0", "rl1")
	runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", web), runtimetest.Page(80))

	p.must("rm", "--force", "--time", "0", "rl1")
	p.nothingLeft("pp5rl", []uint16{web}, []uint16{echo})
}
