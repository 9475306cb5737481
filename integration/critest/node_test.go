package critest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/containerdtest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// chain is a CNI configuration the suite runs against: the pod network
// (bridge + host-local, the same for both) and what gives hostPorts.
type chain struct {
	title string // the table's column
	// hostPorts is the conflist entry after bridge, with its files
	// under dir.
	hostPorts func(t testing.TB, dir string) string
	// timed is the plugin whose runs the cnitime shim logs.
	timed string
	// mustPass: every selected spec must pass (passt-portmap's chain);
	// the other is the reference.
	mustPass bool
}

var (
	portmap = chain{
		title: "bridge + host-local + portmap",
		hostPorts: func(testing.TB, string) string {
			return `{"type": "portmap", "capabilities": {"portMappings": true}}`
		},
		timed: "portmap",
	}
	passtPortmap = chain{
		title: "bridge + host-local + passt-portmap",
		hostPorts: func(t testing.TB, dir string) string {
			return fmt.Sprintf(`{"type": %q, "pasta": %q, "dataDir": %q, "capabilities": {"portMappings": true}}`,
				runtimetest.PluginName, runtimetest.Pasta(t), filepath.Join(dir, "passt-portmap"))
		},
		timed:    runtimetest.PluginName,
		mustPass: true,
	}
)

// network is the CNI network's name; bridgeConf its first plugin: a
// bridge "cni0" in the node's namespace, pod addresses from host-local,
// no masquerading (nothing leaves the node's namespace).
const network = "pp-critest"

func bridgeConf(dir string) string {
	return fmt.Sprintf(`{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true, `+
		`"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}}`,
		filepath.Join(dir, "host-local"))
}

// registryAddr is where the node's image registry listens, inside the
// node's namespace (which holds nothing else, so the port is free).
const registryAddr = "127.0.0.1:5000"

// upstreams are the registry hosts whose images the selected specs and
// containerd's sandbox pull; the node's registry serves them all.
var upstreams = []string{"registry.k8s.io", "gcr.io"}

// PluginEnv names a passt-portmap binary to test instead of the one built
// from this repository (to try another branch's plugin by hand).
const PluginEnv = "CRITEST_PASST_PORTMAP"

// node is a containerd standing for a Kubernetes node, with its own
// network namespace, CNI chain and image registry.
type node struct {
	// Its Dir holds the test's files too: CNI data, the registry's
	// storage, the image layer, critest's report.
	*containerdtest.Containerd
	pluginDir string
	dataDir   string // passt-portmap's
}

// startNode starts containerd with ch in a new node namespace, with the
// images the selected specs use in the node's registry.
func startNode(t testing.TB, ch chain) *node {
	t.Helper()
	runtimetest.Require(t, "docker-registry", "iptables")
	tools(t)
	n := &node{pluginDir: runtimetest.PluginDir(t, "loopback", "bridge", "host-local", "portmap")}
	if ch.timed != runtimetest.PluginName {
		runtimetest.TimePlugin(t, n.pluginDir, ch.timed)
	}
	if p := os.Getenv(PluginEnv); p != "" && ch.timed == runtimetest.PluginName {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v", PluginEnv, err)
		}
		if err := os.WriteFile(filepath.Join(n.pluginDir, "real", runtimetest.PluginName), b, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("testing the passt-portmap of %s=%s", PluginEnv, p)
	}
	mirrors := map[string]string{}
	for _, h := range upstreams {
		mirrors[h] = "http://" + registryAddr
	}
	n.Containerd = containerdtest.New(t, containerdtest.Config{
		PluginDir: n.pluginDir, SandboxImage: pauseImage, NodeNetNS: true, Mirrors: mirrors,
	})
	n.dataDir = filepath.Join(n.Dir, "passt-portmap")
	n.SetNetwork(t, network, bridgeConf(n.Dir), ch.hostPorts(t, n.Dir))
	n.Start(t)
	n.startRegistry(t)
	n.pushImages(t)
	return n
}

// tools returns critest and crane from $CRITEST_BIN_DIR (which
// scripts/test.sh exports from scripts/fetch-critest.sh), failing the
// test without them.
func tools(t testing.TB) (critest, crane string) {
	t.Helper()
	dir := os.Getenv("CRITEST_BIN_DIR")
	if dir == "" {
		t.Fatal("CRITEST_BIN_DIR is not set: run scripts/test.sh, or export CRITEST_BIN_DIR=$(scripts/fetch-critest.sh | tail -n1)")
	}
	critest, crane = filepath.Join(dir, "critest"), filepath.Join(dir, "crane")
	for _, p := range []string{critest, crane} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("no executable %s in CRITEST_BIN_DIR=%s (stat: %v)", filepath.Base(p), dir, err)
		}
	}
	return critest, crane
}

// run runs a command in the node's namespace and returns its output.
func (n *node) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := n.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// startRegistry starts Debian's docker-registry (distribution 2.8) on
// registryAddr in the node's namespace, storing under the work
// directory, and waits until it answers.
func (n *node) startRegistry(t testing.TB) {
	t.Helper()
	_, crane := tools(t)
	dir := filepath.Join(n.Dir, "registry")
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, dir, registryAddr)
	confPath := filepath.Join(n.Dir, "registry.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(n.Dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := n.Command("docker-registry", "serve", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	for {
		_, err := n.run(ctx, crane, "catalog", "--insecure", registryAddr)
		if err == nil {
			return
		}
		select {
		case werr := <-done:
			b, _ := os.ReadFile(filepath.Join(n.Dir, "registry.log"))
			t.Fatalf("docker-registry exited: %v\n%s", werr, b)
		case <-ctx.Done():
			t.Fatalf("docker-registry does not answer on %s: %v", registryAddr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// image is one image the node's registry serves under an upstream name.
type image struct {
	ref        string   // upstream reference, as the specs pull it
	entrypoint []string // nil: none
	cmd        []string
}

// pauseImage is containerd's sandbox image.
const pauseImage = "registry.k8s.io/pause:3.6"

// images are those the selected specs pull (cri-tools v1.34.0,
// pkg/framework and pkg/validate: DefaultLinuxContainerImage,
// webServerLinuxImage, hostNetWebServerLinuxImage, httpdImage), and the
// sandbox image. All share one layer: busybox-static with every applet,
// and critestweb standing in for nginx and httpd.
var images = []image{
	// containerd 1.6 stops a sandbox with SIGKILL.
	{ref: pauseImage, entrypoint: []string{"/bin/sleep", "2147483647"}},
	{ref: "registry.k8s.io/e2e-test-images/busybox:1.29-2", cmd: []string{"sh"}},
	{ref: "registry.k8s.io/e2e-test-images/nginx:1.14-2",
		entrypoint: []string{"/bin/critestweb", "-name", "nginx", "-pidfile", "/var/run/nginx.pid", ":80"}},
	{ref: "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
		entrypoint: []string{"/bin/critestweb", "-name", "httpd", ":80"}},
	// Runs in the node's namespace: webServerHostNetContainerPort.
	{ref: "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
		entrypoint: []string{"/bin/critestweb", "-name", "nginx", ":12003"}},
}

// pushImages writes the layer and pushes every image with crane.
func (n *node) pushImages(t testing.TB) {
	t.Helper()
	_, crane := tools(t)
	layer := filepath.Join(n.Dir, "layer.tar")
	if err := writeLayer(layer, runtimetest.Binary(t, "critestweb")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	base := registryAddr + "/passt-portmap/base:latest"
	if _, err := n.run(ctx, crane, "append", "--insecure", "-f", layer, "-t", base); err != nil {
		t.Fatal(err)
	}
	for _, im := range images {
		host, path, _ := strings.Cut(im.ref, "/")
		if !slices.Contains(upstreams, host) {
			t.Fatalf("image %q: registry %q is not mirrored", im.ref, host)
		}
		args := []string{"mutate", "--insecure", base, "--set-platform", "linux/amd64", "-t", registryAddr + "/" + path}
		if im.entrypoint != nil {
			args = append(args, "--entrypoint", strings.Join(im.entrypoint, ","))
		}
		if im.cmd != nil {
			args = append(args, "--cmd", strings.Join(im.cmd, ","))
		}
		if _, err := n.run(ctx, crane, args...); err != nil {
			t.Fatal(err)
		}
	}
}

// layerTime is every entry's modification time: the layer, and so every
// image digest, is the same from run to run for the same binaries.
var layerTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// writeLayer writes the images' one layer: Debian's static busybox with a
// link per applet in /bin, critestweb, the directories a container
// needs, and root in /etc/passwd and /etc/group.
func writeLayer(path, web string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w (Debian's busybox-static)", err)
	}
	if err := runtimetest.Static(bb); err != nil {
		return fmt.Errorf("%w (install busybox-static)", err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Uname, h.Gname, h.Format = layerTime, "root", "root", tar.FormatPAX
		return tw.WriteHeader(h)
	}
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"root", 0o700},
		{"sys", 0o555}, {"tmp", 0o1777}, {"var", 0o755}, {"var/run", 0o755}} {
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d.name + "/", Mode: d.mode}); err != nil {
			return err
		}
	}
	addFile := func(name string, mode int64, r io.Reader, size int64) error {
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	for _, file := range [][2]string{{"bin/busybox", bb}, {"bin/critestweb", web}} {
		name, src := file[0], file[1]
		sf, err := os.Open(src)
		if err != nil {
			return err
		}
		fi, err := sf.Stat()
		if err == nil {
			err = addFile(name, 0o755, sf, fi.Size())
		}
		sf.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
	}
	for _, file := range [][2]string{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
	} {
		name, content := file[0], file[1]
		if err := addFile(name, 0o644, strings.NewReader(content), int64(len(content))); err != nil {
			return err
		}
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
