package cri_test

import (
	"fmt"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// BenchmarkCRIPodSandbox: RunPodSandbox with a port mapping, then
// StopPodSandbox and RemovePodSandbox; plugin-ADD-ms and plugin-DEL-ms
// are the medians of the time the plugin itself took (the cnitime
// shim's log; DEL counts both of a pod's).
func BenchmarkCRIPodSandbox(b *testing.B) {
	c := startContainerd(b)
	port := pastatest.FreePort(b, "tcp")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		cx, cancel := ctx(b)
		r, err := c.RT.RunPodSandbox(cx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "passt-portmap-test"},
			PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: int32(port)}},
			Linux:        &runtimeapi.LinuxPodSandboxConfig{},
		}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.RT.StopPodSandbox(cx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.RT.RemovePodSandbox(cx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
	b.StopTimer()
	ts, err := runtimetest.Timings(c.pluginDir)
	if err != nil {
		b.Fatal(err)
	}
	for _, cmd := range []string{"ADD", "DEL"} {
		ds := runtimetest.Durations(ts, cmd)
		b.ReportMetric(float64(runtimetest.Median(ds).Microseconds())/1000, "plugin-"+cmd+"-ms")
		b.Logf("%s: %d runs, median %v", cmd, len(ds), runtimetest.Median(ds))
	}
}
