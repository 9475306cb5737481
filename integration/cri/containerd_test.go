// Package cri_test drives the plugin through containerd 1.6's CRI, the
// way a Kubernetes node does: the test starts Debian 12's containerd with
// its own configuration and directories, imports images it built offline
// with ctr, and runs pod sandboxes with port mappings over gRPC
// (k8s.io/cri-api), with a web server and a UDP echo in each pod. The
// conflist is a Kubernetes node's: the pod network (Debian's bridge and
// host-local plugins), then the plugin chained after it in place of
// portmap. The bridge plugin runs in a network namespace of the test's
// ("podnet", through a wrapper in the plugin directory), where it makes
// its bridge and the pods' host veths: the host's interfaces stay as they
// are, while the plugin and its pastas run in the host's namespace, as
// containerd does, and the tests reach the pods through their host ports
// on the host's loopback.
package cri_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// Images the test imports.
const (
	webImage   = "localhost/passt-portmap-web:latest"
	pauseImage = "localhost/passt-portmap-pause:latest"
	network    = "pp-cri"
)

// containerd is one containerd started by a test.
type containerd struct {
	t         testing.TB
	dir       string
	sock      string
	pluginDir string
	confDir   string
	dataDir   string
	podnet    *pastatest.NetNS // where the bridge plugin runs
	cmd       *exec.Cmd
	conn      *grpc.ClientConn
	rt        runtimeapi.RuntimeServiceClient
}

// startContainerd starts containerd with everything under one directory,
// waits for its CRI to report the network ready, and imports the images.
// When the test ends, pods are stopped and removed first (their shims
// outlive containerd), then containerd is stopped and its mounts undone.
func startContainerd(t testing.TB) *containerd {
	t.Helper()
	runtimetest.Require(t, "containerd", "ctr", "runc", "containerd-shim-runc-v2")
	dir := runtimetest.ShortDir(t, "ctd-")
	c := &containerd{t: t, dir: dir, sock: filepath.Join(dir, "c.sock"),
		pluginDir: runtimetest.PluginDir(t, "loopback", "host-local"), confDir: filepath.Join(dir, "net.d"), dataDir: filepath.Join(dir, "data"),
		podnet: pastatest.NewNetNS(t)}
	c.bridgeIn(t)
	if err := os.MkdirAll(c.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.setNetwork(t, network, c.chain()...)
	port := pastatest.FreePort(t, "tcp")
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "%[7]d"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[10]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, filepath.Join(dir, "t.sock"), filepath.Join(dir, "opt"),
		pauseImage, port, c.pluginDir, c.confDir, filepath.Join(dir, "runc"))
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", confPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	logf.Close()
	t.Cleanup(c.stop)

	c.conn, err = grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c.rt = runtimeapi.NewRuntimeServiceClient(c.conn)
	c.waitReady()
	c.importImages()
	return c
}

// plugin is the plugin's entry in the conflist, chained after the pod
// network in place of portmap.
func (c *containerd) plugin() string {
	return fmt.Sprintf(`{"type": %q, "pasta": %q, "dataDir": %q, "timeout": "20s", "capabilities": {"portMappings": true}}`,
		runtimetest.PluginName, runtimetest.Pasta(c.t), c.dataDir)
}

// podNetwork is the pod network's entry: Debian's bridge plugin with
// host-local addresses of both families (see bridgeIn).
func (c *containerd) podNetwork() string {
	return fmt.Sprintf(`{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
	  "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.234.0.0/24"}], [{"subnet": "fd7e:3c1a:9b2d::/64"}]],
	           "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}`, filepath.Join(c.dir, "ipam"))
}

// bridgeIn puts a "bridge" plugin into the plugin directory that runs
// Debian's in c.podnet: the bridge and the host veths are made there, the
// pod's end goes into the pod's namespace (named by path) as always.
func (c *containerd) bridgeIn(t testing.TB) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\nexec nsenter --net=%s /usr/lib/cni/bridge \"$@\"\n", c.podnet.Path)
	if err := os.WriteFile(filepath.Join(c.pluginDir, "bridge"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// chain is the conflist's plugins: the pod network, then the plugin.
func (c *containerd) chain() []string { return []string{c.podNetwork(), c.plugin()} }

// setNetwork makes the network of name with the given plugins the only
// configuration in the CNI directory (containerd watches it and reloads).
func (c *containerd) setNetwork(t testing.TB, name string, plugins ...string) {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(c.confDir, "*.conflist"))
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, strings.Join(plugins, ", "))
	tmp := filepath.Join(c.confDir, ".tmp")
	if err := os.WriteFile(tmp, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.confDir, "10-"+name+".conflist")); err != nil {
		t.Fatal(err)
	}
	for _, o := range old {
		if filepath.Base(o) != "10-"+name+".conflist" {
			if err := os.Remove(o); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func ctx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), runtimetest.Timeout)
}

// waitReady waits until the CRI reports the runtime and the network
// ready, or containerd exits.
func (c *containerd) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(runtimetest.Timeout)
	var last error
	for time.Now().Before(deadline) {
		cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.rt.Status(cx, &runtimeapi.StatusRequest{})
		cancel()
		if err == nil {
			ready := 0
			for _, cond := range st.GetStatus().GetConditions() {
				if cond.Status && (cond.Type == runtimeapi.RuntimeReady || cond.Type == runtimeapi.NetworkReady) {
					ready++
				}
			}
			if ready == 2 {
				return
			}
			err = fmt.Errorf("conditions %v", st.GetStatus().GetConditions())
		}
		last = err
		if c.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("containerd's CRI not ready: %v\n%s", last, c.log())
}

// log returns the tail of containerd's log.
func (c *containerd) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ctr runs ctr against this containerd in the CRI's namespace.
func (c *containerd) ctr(args ...string) (string, error) {
	cx, cancel := ctx(c.t)
	defer cancel()
	out, err := exec.CommandContext(cx, "ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// importImages builds a docker-archive with the web image and the sandbox
// image (one layer: the runtimetest root) and imports it with ctr.
func (c *containerd) importImages() {
	t := c.t
	t.Helper()
	dir := filepath.Join(c.dir, "image")
	root := filepath.Join(dir, "rootfs")
	runtimetest.Rootfs(t, root)
	layer := filepath.Join(dir, "layer.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "-C", root, "-cf", layer, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar layer: %v: %s", err, out)
	}
	b, err := os.ReadFile(layer)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	type manifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifests []manifest
	files := []string{"manifest.json", "layer.tar"}
	for _, img := range []struct {
		tag        string
		entrypoint []string
	}{
		{webImage, runtimetest.Command()},
		// containerd 1.6 stops the sandbox with SIGKILL.
		{pauseImage, []string{"/bin/sleep", "2147483647"}},
	} {
		cfg, err := json.Marshal(map[string]any{
			"architecture": "amd64", "os": "linux",
			"config": map[string]any{"Entrypoint": img.entrypoint},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		})
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(cfg)
		name := hex.EncodeToString(s[:]) + ".json"
		if err := os.WriteFile(filepath.Join(dir, name), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, name)
		manifests = append(manifests, manifest{Config: name, RepoTags: []string{img.tag}, Layers: []string{"layer.tar"}})
	}
	mb, err := json.Marshal(manifests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(c.dir, "images.tar")
	if out, err := exec.Command("tar", append([]string{"-C", dir, "-cf", archive}, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("tar archive: %v: %s", err, out)
	}
	if out, err := c.ctr("images", "import", archive); err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
}

// stop removes every pod, then stops containerd and undoes its mounts.
func (c *containerd) stop() {
	t := c.t
	if c.rt != nil {
		cx, cancel := ctx(t)
		pods, err := c.rt.ListPodSandbox(cx, &runtimeapi.ListPodSandboxRequest{})
		cancel()
		if err != nil {
			t.Errorf("cleanup: list pods: %v", err)
		}
		for _, p := range pods.GetItems() {
			cx, cancel := ctx(t)
			if _, err := c.rt.StopPodSandbox(cx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
				t.Errorf("cleanup: stop pod %s: %v", p.Metadata.GetName(), err)
			}
			if _, err := c.rt.RemovePodSandbox(cx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
				t.Errorf("cleanup: remove pod %s: %v", p.Metadata.GetName(), err)
			}
			cancel()
		}
		c.conn.Close()
	}
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
	unmountUnder(c.dir, t.Logf)
}

// unmountUnder undoes every mount under dir (snapshots, namespaces, shm),
// deepest first.
func unmountUnder(dir string, logf func(string, ...any)) {
	b, _ := os.ReadFile("/proc/self/mounts")
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			logf("cleanup: unmount %s: %v", mounts[i], err)
		}
	}
}
