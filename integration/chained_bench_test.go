package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// BenchmarkChainedVsPortmap times the port plugin of a Kubernetes node's
// chain, after the pod network, as containerd runs it: one ADD (with the
// bridge's result as prevResult) and one DEL of one TCP host port, by
// passt-portmap (chained: its own pasta on a side interface) and by
// Debian's portmap (iptables DNAT in the node's namespace), interleaved
// in one run on one pod network. Reported: the medians of each, in ms,
// and their ratio.
//
//	go test -run '^$' -bench ChainedVsPortmap -benchtime 15x ./integration/
func BenchmarkChainedVsPortmap(b *testing.B) {
	c := newChainNet(b)
	bridge := c.list(b, c.bridgePlugin())
	rt := c.rt(nil)
	b.Cleanup(func() {
		c.del(b, bridge, rt)
	})
	res, err := c.add(b, bridge, rt).GetAsVersion("1.0.0")
	if err != nil {
		b.Fatal(err)
	}
	port := int(pastatest.FreePort(b, "tcp"))
	ms := map[string]any{"portMappings": []map[string]any{portMapping("tcp", port, 80, "")}}
	confs := map[string]map[string]any{
		"passt-portmap": c.chainedConf(res, port, nil),
		"portmap": {"cniVersion": "1.0.0", "name": chainName, "type": "portmap", "capabilities": map[string]any{"portMappings": true},
			"runtimeConfig": ms, "prevResult": res},
	}
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for b.Loop() {
		for _, plugin := range []string{"passt-portmap", "portmap"} {
			start := time.Now()
			for _, verb := range []string{"ADD", "DEL"} {
				if err := c.execPluginNamed(b, plugin, verb, c.pod.Path, confs[plugin]); err != nil {
					b.Fatalf("%s %s: %v", plugin, verb, err)
				}
			}
			times[plugin] = append(times[plugin], time.Since(start))
		}
	}
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	pp, pm := med(times["passt-portmap"]), med(times["portmap"])
	b.ReportMetric(float64(pp.Microseconds())/1000, "passt-portmap-ms")
	b.ReportMetric(float64(pm.Microseconds())/1000, "portmap-ms")
	b.ReportMetric(float64(pp)/float64(pm), "ratio")
	b.Log(fmt.Sprintf("ADD+DEL medians over %d each: passt-portmap (chained) %v, portmap %v", len(times["portmap"]), pp, pm))
}
