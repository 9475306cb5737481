package cri_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// failLoopback replaces the loopback plugin of c with one that fails ADD
// and DEL for pods named pod while the returned file exists (remove it to
// let loopback work again).
func (c *containerd) failLoopback(t *testing.T, pod string) string {
	t.Helper()
	bin := filepath.Join(c.pluginDir, "loopback")
	real := filepath.Join(c.pluginDir, "loopback.real")
	if err := os.Rename(bin, real); err != nil {
		t.Fatal(err)
	}
	flag := filepath.Join(c.Dir, "fail-"+pod)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
case ";$CNI_ARGS;" in
*";K8S_POD_NAME=%s;"*)
	if [ -e %q ]; then
		echo '{"cniVersion": "1.0.0", "code": 999, "msg": "loopback failure injected by the test"}'
		exit 1
	fi
esac
exec %q "$@"
`, pod, flag, real)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return flag
}

// podByName returns the sandbox of that name (nil if none).
func (c *containerd) podByName(t *testing.T, name string) *runtimeapi.PodSandbox {
	t.Helper()
	cx, cancel := ctx(t)
	defer cancel()
	r, err := c.RT.ListPodSandbox(cx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Items {
		if p.Metadata.GetName() == name {
			return p
		}
	}
	return nil
}

// TestCRIOtherNetworkFails: when containerd's own loopback network fails
// a pod (ADD and DEL), RunPodSandbox fails after the plugin's ADD
// succeeded, and containerd, which stops at the first failing DEL, never
// calls the plugin's: the pod's pasta runs on. Once loopback works again,
// StopPodSandbox (what the kubelet retries) reaches the plugin's DEL and
// nothing of the pod is left.
func TestCRIOtherNetworkFails(t *testing.T) {
	c := startContainerd(t)
	flag := c.failLoopback(t, "failing")
	tcp, udp := pastatest.FreePort(t, "tcp"), pastatest.FreePort(t, "udp")
	_, err := c.runPod("failing", tcp, udp)
	if err == nil || !strings.Contains(err.Error(), "loopback failure injected") {
		t.Fatalf("RunPodSandbox with a failing loopback: %v, want the injected failure", err)
	}
	sb := c.podByName(t, "failing")
	if sb == nil {
		t.Fatalf("containerd keeps no sandbox after a failed cleanup\n%s", c.Log())
	}
	p := &pod{id: sb.Id, name: "failing", tcp: tcp, udp: udp}
	rec := c.record(t, p)
	if rec == nil {
		t.Fatal("no record of the plugin's ADD for the failed pod")
	}
	if _, ok, err := forwarder.Running(rec.Dir); !ok || err != nil {
		t.Fatalf("pasta of the failed pod: running %v, %v", ok, err)
	}
	if dels, _ := c.calls(t, p, "DEL"); dels != 0 {
		t.Fatalf("the plugin got %d DEL for the failed pod, want none (containerd stops at loopback's)", dels)
	}
	t.Logf("after the failed RunPodSandbox: sandbox %s %v, pasta of %s runs", sb.Id[:12], sb.State, rec.Dir)

	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	c.stopPod(t, p)
	c.removePod(t, p)
	runtimetest.NothingLeft(t, c.dataDir)
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", tcp), runtimetest.Page(80))
}

// TestCRIReapAfterConfigChange: containerd tears a pod down with the
// configuration it has now; when that no longer names the plugin's
// network (the node's CNI configuration was changed while the pod ran),
// the plugin gets no DEL and containerd removes the namespace: pasta
// exits, its directory and record stay. The next ADD on the network
// releases them.
func TestCRIReapAfterConfigChange(t *testing.T) {
	c := startContainerd(t)
	ports := pastatest.FreePorts(t, "tcp", 2)
	udps := pastatest.FreePorts(t, "udp", 2)
	old, err := c.runPod("old", ports[0], udps[0])
	if err != nil {
		t.Fatal(err)
	}
	old.mustServe(t)
	rec := c.record(t, old)
	if rec == nil {
		t.Fatal("no record for the pod")
	}

	// Another network (here: the plugin with another name and data
	// directory; containerd needs an interface with an address).
	c.SetNetwork(t, "other", c.podNetwork(), strings.Replace(c.plugin(), c.dataDir, filepath.Join(c.Dir, "other"), 1))
	c.waitNetwork(t, false)
	c.stopPod(t, old)
	c.removePod(t, old)
	runtimetest.WaitNoProcess(t, rec.Dir)
	if _, err := os.Stat(rec.Dir); err != nil {
		t.Fatalf("forwarder directory of the removed pod: %v, want it left behind until the next ADD", err)
	}
	if c.record(t, old) == nil {
		t.Fatal("record of the removed pod gone without a DEL")
	}

	c.SetNetwork(t, network, c.chain()...)
	c.waitNetwork(t, true)
	next, err := c.runPod("next", ports[1], udps[1])
	if err != nil {
		t.Fatal(err)
	}
	next.mustServe(t)
	if _, err := os.Stat(rec.Dir); !os.IsNotExist(err) {
		t.Errorf("forwarder directory of the removed pod after the next ADD: %v", err)
	}
	if r := c.record(t, old); r != nil {
		t.Errorf("record of the removed pod after the next ADD: %+v", r)
	}
	c.stopPod(t, next)
	c.removePod(t, next)
	runtimetest.NothingLeft(t, c.dataDir)
}

// waitNetwork waits until containerd has loaded the CNI configuration
// with (ours true) or without the plugin's network: a probe pod without
// port mappings is run until its ADD does (or does not) make a record in
// the network's data directory.
func (c *containerd) waitNetwork(t *testing.T, ours bool) {
	t.Helper()
	deadline := time.Now().Add(runtimetest.Timeout)
	for i := 0; ; i++ {
		name := fmt.Sprintf("probe-%d", i)
		cx, cancel := ctx(t)
		r, err := c.RT.RunPodSandbox(cx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "passt-portmap-test"},
			Linux:    &runtimeapi.LinuxPodSandboxConfig{},
		}})
		cancel()
		if err != nil {
			t.Fatalf("probe pod: %v", err)
		}
		p := &pod{id: r.PodSandboxId, name: name}
		recorded := c.record(t, p) != nil
		c.stopPod(t, p)
		c.removePod(t, p)
		if recorded == ours {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not load the changed CNI configuration\n%s", c.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
