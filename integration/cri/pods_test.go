package cri_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// pod is a pod sandbox with a web container, its host ports mapped to
// container ports 80/tcp and 5353/udp on every address, and, when lo and
// v6 are set, 8000/tcp on 127.0.0.1:lo and 8001/tcp on [::1]:v6.
type pod struct {
	id       string
	name     string
	tcp, udp uint16
	lo, v6   uint16
}

// runPod runs a pod sandbox with the port mappings and starts the web
// container in it.
func (c *containerd) runPod(name string, tcp, udp uint16) (*pod, error) {
	return c.runPodHostIP(&pod{name: name, tcp: tcp, udp: udp})
}

// runPodHostIP is runPod with p's host-address mappings as well.
func (c *containerd) runPodHostIP(p *pod) (*pod, error) {
	name := p.name
	mappings := []*runtimeapi.PortMapping{
		{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: int32(p.tcp)},
		{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 5353, HostPort: int32(p.udp)},
	}
	if p.lo != 0 && p.v6 != 0 {
		mappings = append(mappings,
			&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8000, HostPort: int32(p.lo), HostIp: "127.0.0.1"},
			&runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8001, HostPort: int32(p.v6), HostIp: "::1"})
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: name + "-uid", Namespace: "passt-portmap-test"},
		PortMappings: mappings,
		LogDirectory: filepath.Join(c.Dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	cx, cancel := ctx(c.t)
	defer cancel()
	r, err := c.RT.RunPodSandbox(cx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("run pod %s: %w", name, err)
	}
	p.id = r.PodSandboxId
	cr, err := c.RT.CreateContainer(cx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.id,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "web"},
			Image:    &runtimeapi.ImageSpec{Image: webImage},
			LogPath:  "web.log",
		},
		SandboxConfig: cfg,
	})
	if err != nil {
		return p, fmt.Errorf("create the container of pod %s: %w", name, err)
	}
	if _, err := c.RT.StartContainer(cx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		return p, fmt.Errorf("start the container of pod %s: %w", name, err)
	}
	return p, nil
}

func (c *containerd) stopPod(t *testing.T, p *pod) {
	t.Helper()
	cx, cancel := ctx(t)
	defer cancel()
	if _, err := c.RT.StopPodSandbox(cx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("StopPodSandbox %s: %v", p.name, err)
	}
}

func (c *containerd) removePod(t *testing.T, p *pod) {
	t.Helper()
	cx, cancel := ctx(t)
	defer cancel()
	if _, err := c.RT.RemovePodSandbox(cx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("RemovePodSandbox %s: %v", p.name, err)
	}
}

// mustServe proves the pod's ports from the host: TCP and UDP on
// 127.0.0.1 and [::1].
func (p *pod) mustServe(t *testing.T) {
	t.Helper()
	for _, ip := range []string{"127.0.0.1", "::1"} {
		runtimetest.MustGet(t, runtimetest.Addr(ip, p.tcp), runtimetest.Page(80))
		runtimetest.MustEcho(t, runtimetest.Addr(ip, p.udp), 5353)
	}
	if p.lo != 0 && p.v6 != 0 {
		runtimetest.MustGet(t, runtimetest.Addr("127.0.0.1", p.lo), runtimetest.Page(8000))
		runtimetest.MustGet(t, runtimetest.Addr("::1", p.v6), runtimetest.Page(8001))
		// A host address binds that address only.
		runtimetest.MustNotGet(t, runtimetest.Addr("::1", p.lo), runtimetest.Page(8000))
		runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", p.v6), runtimetest.Page(8001))
	}
}

func (p *pod) mustNotServe(t *testing.T) {
	t.Helper()
	runtimetest.MustNotGet(t, runtimetest.Addr("127.0.0.1", p.tcp), runtimetest.Page(80))
	runtimetest.MustNotGet(t, runtimetest.Addr("::1", p.tcp), runtimetest.Page(80))
	runtimetest.MustNotEcho(t, runtimetest.Addr("127.0.0.1", p.udp), 5353)
}

// record returns the pod's ownership record (nil when there is none).
func (c *containerd) record(t *testing.T, p *pod) *store.Record {
	t.Helper()
	st := store.New(filepath.Join(c.dataDir, "records"))
	k := store.Key{Network: network, ContainerID: p.id, IfName: "eth0"}
	if _, err := os.Stat(st.RecordPath(k)); os.IsNotExist(err) {
		return nil
	}
	rec, err := st.Get(k)
	if err != nil {
		t.Fatalf("record of pod %s: %v", p.name, err)
	}
	return rec
}

// calls counts the plugin's runs of command for the pod, and how many of
// them failed.
func (c *containerd) calls(t *testing.T, p *pod, command string) (n, failed int) {
	t.Helper()
	ts, err := runtimetest.Timings(c.pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range ts {
		if tm.Command == command && tm.ContainerID == p.id {
			n++
			if tm.Status != 0 {
				failed++
			}
		}
	}
	return n, failed
}

// TestCRIPods: pod sandboxes started concurrently on a bridge network,
// each with its own host ports, are served on 127.0.0.1 and [::1] over TCP
// and UDP (and on the one address a mapping's hostIP names) through their
// own chained forwarders; StopPodSandbox closes a pod's ports and stops
// its pasta while the others keep serving; RemovePodSandbox (a second DEL,
// with no namespace and no previous result) succeeds and leaves no record.
func TestCRIPods(t *testing.T) {
	c := startContainerd(t)
	const n = 3
	tcp := pastatest.FreePorts(t, "tcp", 3*n)
	udp := pastatest.FreePorts(t, "udp", n)
	pods := make([]*pod, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p := &pod{name: fmt.Sprintf("web-%d", i), tcp: tcp[i], udp: udp[i], lo: tcp[n+i], v6: tcp[2*n+i]}
		wg.Go(func() { pods[i], errs[i] = c.runPodHostIP(p) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%v\n%s", err, c.Log())
		}
	}
	dirs := map[string]bool{}
	for _, p := range pods {
		p.mustServe(t)
		rec := c.record(t, p)
		if rec == nil || !rec.Managed || rec.Dir == "" || rec.Side == nil || len(runtimetest.ProcessesWith(rec.Dir)) != 1 {
			t.Fatalf("pod %s: record %+v, want a chained forwarder running", p.name, rec)
		}
		dirs[rec.Dir] = true
	}
	if len(dirs) != n {
		t.Fatalf("%d forwarder directories for %d pods", len(dirs), n)
	}

	first := c.record(t, pods[0])
	c.stopPod(t, pods[0])
	runtimetest.WaitNoProcess(t, first.Dir)
	pods[0].mustNotServe(t)
	for _, p := range pods[1:] {
		p.mustServe(t)
	}
	c.removePod(t, pods[0])
	if rec := c.record(t, pods[0]); rec != nil {
		t.Errorf("record of a removed pod: %+v", rec)
	}
	if dels, failed := c.calls(t, pods[0], "DEL"); dels != 2 || failed != 0 {
		t.Errorf("DEL calls for the stopped and removed pod: %d (%d failed), want 2 (StopPodSandbox's and RemovePodSandbox's), none failed", dels, failed)
	}
	for _, p := range pods[1:] {
		c.stopPod(t, p)
		c.removePod(t, p)
		p.mustNotServe(t)
	}
	runtimetest.NothingLeft(t, c.dataDir)
	runtimetest.NoListener(t, tcp, udp)
}
