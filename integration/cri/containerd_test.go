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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/containerdtest"
	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// Images the test imports.
const (
	webImage   = "localhost/passt-portmap-web:latest"
	pauseImage = "localhost/passt-portmap-pause:latest"
	network    = "pp-cri"
)

// containerd is one containerd started by a test (see
// containerdtest), with the pod network and the plugin chained after it.
type containerd struct {
	*containerdtest.Containerd
	t         testing.TB
	pluginDir string
	dataDir   string
	podnet    *pastatest.NetNS // where the bridge plugin runs
}

// startContainerd starts containerd with the chain, and imports the
// images.
func startContainerd(t testing.TB) *containerd {
	t.Helper()
	c := &containerd{t: t, pluginDir: runtimetest.PluginDir(t, "loopback", "host-local"), podnet: pastatest.NewNetNS(t)}
	c.Containerd = containerdtest.New(t, containerdtest.Config{PluginDir: c.pluginDir, SandboxImage: pauseImage})
	c.dataDir = filepath.Join(c.Dir, "data")
	c.bridgeIn(t)
	c.SetNetwork(t, network, c.chain()...)
	c.Start(t)
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
	           "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}`, filepath.Join(c.Dir, "ipam"))
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

func ctx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), runtimetest.Timeout)
}

// importImages builds a docker-archive with the web image and the sandbox
// image (one layer: the runtimetest root) and imports it with ctr.
func (c *containerd) importImages() {
	t := c.t
	t.Helper()
	dir := filepath.Join(c.Dir, "image")
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
	archive := filepath.Join(c.Dir, "images.tar")
	if out, err := exec.Command("tar", append([]string{"-C", dir, "-cf", archive}, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("tar archive: %v: %s", err, out)
	}
	if out, err := c.Ctr("images", "import", archive); err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
}
