package critest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// benchHostPort is the benchmark pods' hostPort, in each node's own
// namespace.
const benchHostPort = 8080

// webImage is the image of the benchmark pods' container (critestweb
// on port 80, standing in for nginx).
const webImage = "registry.k8s.io/e2e-test-images/nginx:1.14-2"

// BenchmarkPodStart starts one pod under CRI per iteration on each
// chain, bridge + host-local + portmap and bridge + host-local +
// passt-portmap, each on its own node (containerd in its own namespace),
// interleaved and alternating which goes first:
//
//   - start: RunPodSandbox with hostPort 8080 -> 80, CreateContainer,
//     StartContainer, until the first page comes through the node's
//     127.0.0.1:8080;
//   - stop: StopPodSandbox and RemovePodSandbox.
//
// It reports the medians of each chain (CHAIN-start-ms, CHAIN-stop-ms),
// passt-portmap's over portmap's (start-ratio, stop-ratio), the medians
// of the hostPort plugin's own ADD and DEL (CHAIN-ADD-ms, CHAIN-DEL-ms,
// from the cnitime shim; DEL counts both of a pod's), and logs the client
// address the pod's server saw for the node's 127.0.0.1. Use -benchtime
// Nx for N pods per chain.
func BenchmarkPodStart(b *testing.B) {
	chains := []chain{portmap, passtPortmap}
	nodes := make([]*node, len(chains))
	for i, ch := range chains {
		nodes[i] = startNode(b, ch)
		ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
		_, err := nodes[i].Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: webImage}})
		cancel()
		if err != nil {
			b.Fatalf("%s: pull %s: %v", ch.title, webImage, err)
		}
	}
	starts := make([][]time.Duration, len(chains))
	stops := make([][]time.Duration, len(chains))
	clients := make([]string, len(chains))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for k := range chains {
			j := (i + k) % len(chains)
			start, stop, client, err := nodes[j].podCycle(fmt.Sprintf("bench-%d", i))
			if err != nil {
				b.Fatalf("%s: %v\n%s", chains[j].title, err, nodes[j].Log())
			}
			starts[j] = append(starts[j], start)
			stops[j] = append(stops[j], stop)
			clients[j] = client
		}
	}
	b.StopTimer()
	short := []string{"portmap", "passt-portmap"}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for j, ch := range chains {
		b.ReportMetric(ms(runtimetest.Median(starts[j])), short[j]+"-start-ms")
		b.ReportMetric(ms(runtimetest.Median(stops[j])), short[j]+"-stop-ms")
		ts, err := runtimetest.Timings(nodes[j].pluginDir)
		if err != nil {
			b.Fatal(err)
		}
		for _, cmd := range []string{"ADD", "DEL"} {
			b.ReportMetric(ms(runtimetest.Median(runtimetest.Durations(ts, cmd))), short[j]+"-"+cmd+"-ms")
		}
		b.Logf("%s: %d pods, start median %v, stop median %v; the pod's server saw the node's 127.0.0.1 as %s",
			ch.title, len(starts[j]), runtimetest.Median(starts[j]), runtimetest.Median(stops[j]), clients[j])
	}
	b.ReportMetric(float64(runtimetest.Median(starts[1]))/float64(runtimetest.Median(starts[0])), "start-ratio")
	b.ReportMetric(float64(runtimetest.Median(stops[1]))/float64(runtimetest.Median(stops[0])), "stop-ratio")
}

// podCycle runs one pod (see BenchmarkPodStart) and returns how long it
// took to serve and to go, and the client address its server saw.
func (n *node) podCycle(name string) (start, stop time.Duration, client string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "passt-portmap-bench"},
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: benchHostPort}},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	t0 := time.Now()
	r, err := n.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return 0, 0, "", fmt.Errorf("RunPodSandbox: %w", err)
	}
	id := r.PodSandboxId
	cr, err := n.RT.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: id, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "web"}, Image: &runtimeapi.ImageSpec{Image: webImage}},
	})
	if err != nil {
		return 0, 0, "", fmt.Errorf("CreateContainer: %w", err)
	}
	if _, err := n.RT.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		return 0, 0, "", fmt.Errorf("StartContainer: %w", err)
	}
	addr := runtimetest.Addr("127.0.0.1", benchHostPort)
	var page string
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		page, err = runtimetest.GetVia(actx, n.Dial, addr)
		acancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return 0, 0, "", fmt.Errorf("GET %s in the node: %w", addr, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	start = time.Since(t0)
	if !strings.Contains(page, "Welcome to nginx!") {
		return 0, 0, "", fmt.Errorf("GET %s in the node: %q, not the pod's page", addr, page)
	}
	t1 := time.Now()
	if _, err := n.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return 0, 0, "", fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := n.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return 0, 0, "", fmt.Errorf("RemovePodSandbox: %w", err)
	}
	stop = time.Since(t1)
	if _, c, ok := strings.Cut(page, "<p>client "); ok {
		client, _, _ = strings.Cut(c, "</p>")
	}
	return start, stop, client, nil
}
