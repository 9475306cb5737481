package podman_test

import (
	"fmt"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// BenchmarkPodmanRun: "podman run -d -p" then "podman rm -f" of one
// container; plugin-ADD-ms and plugin-DEL-ms are the medians of the time
// the plugin itself took (the cnitime shim's log), the share of a start
// and a removal spent in the plugin.
func BenchmarkPodmanRun(b *testing.B) {
	p := newPodman(b, config{})
	p.network("pp", p.managed())
	port := pastatest.FreePort(b, "tcp")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		p.must(runArgs(name, "pp", "-p", fmt.Sprintf("%d:80", port))...)
		p.must("rm", "--force", "--time", "0", name)
	}
	b.StopTimer()
	reportPlugin(b, p.pluginDir)
}

func reportPlugin(b *testing.B, pluginDir string) {
	ts, err := runtimetest.Timings(pluginDir)
	if err != nil {
		b.Fatal(err)
	}
	for _, cmd := range []string{"ADD", "DEL"} {
		ds := runtimetest.Durations(ts, cmd)
		b.ReportMetric(float64(runtimetest.Median(ds).Microseconds())/1000, "plugin-"+cmd+"-ms")
		b.Logf("%s: %d runs, median %v", cmd, len(ds), runtimetest.Median(ds))
	}
}

// BenchmarkPodmanRootlessRun is BenchmarkPodmanRun for a rootless Podman
// (a user the benchmark creates, as TestPodmanRootless does).
func BenchmarkPodmanRootlessRun(b *testing.B) {
	r := newRootless(b)
	port := pastatest.FreePort(b, "tcp")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("bench-%d", i)
		r.must(runArgs(name, "pp", "-p", fmt.Sprintf("%d:80", port))...)
		r.must("rm", "--force", "--time", "0", name)
	}
	b.StopTimer()
	reportPlugin(b, r.pluginDir)
}
