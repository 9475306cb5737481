package podman5_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

// timeStart measures one `podman run -d -p PORT:80` on network until the
// page first answers on 127.0.0.1:PORT, and the `podman rm -f` after it.
func (p *podman) timeStart(b *testing.B, network, name string) (start, rm time.Duration) {
	b.Helper()
	port := pastatest.FreePort(b, "tcp")
	t0 := time.Now()
	p.must(p.runArgs(name, network, "-p", fmt.Sprintf("%d:80", port))...)
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		page, err := runtimetest.Get(actx, runtimetest.Addr("127.0.0.1", port))
		acancel()
		if err == nil && page == runtimetest.Page(80) {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("network %s: no page on port %d: %v", network, port, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	start = time.Since(t0)
	t1 := time.Now()
	p.must("rm", "--force", "--time", "0", name)
	return start, time.Since(t1)
}

// variant is one network a benchmark starts containers on.
type variant struct {
	name, network string
}

// interleave runs b.N rounds of one start per variant, in an order that
// turns every round (so that no variant always comes first), and reports
// the median start and rm of each and the ratio of each start to the
// first variant's.
func interleave(b *testing.B, p *podman, vs []variant) {
	b.Helper()
	starts := make([][]time.Duration, len(vs))
	rms := make([][]time.Duration, len(vs))
	for i := range b.N {
		for j := range vs {
			k := (i + j) % len(vs)
			s, r := p.timeStart(b, vs[k].network, fmt.Sprintf("bench-%d-%d", i, k))
			starts[k] = append(starts[k], s)
			rms[k] = append(rms[k], r)
		}
	}
	base := runtimetest.Median(starts[0])
	var line []string
	for k, v := range vs {
		s, r := runtimetest.Median(starts[k]), runtimetest.Median(rms[k])
		b.ReportMetric(s.Seconds(), v.name+"-start-s")
		b.ReportMetric(r.Seconds(), v.name+"-rm-s")
		line = append(line, fmt.Sprintf("%s: start %.1f ms (x%.2f), rm %.1f ms", v.name, ms(s), float64(s)/float64(base), ms(r)))
	}
	b.Logf("medians of %d interleaved rounds: %s", b.N, strings.Join(line, "; "))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sysctls are what Podman's bridge network changes on the machine, with
// their values before.
type sysctls map[string]string

func saveSysctls(b *testing.B, names ...string) sysctls {
	s := sysctls{}
	for _, n := range names {
		v, err := os.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		s[n] = string(v)
	}
	return s
}

func (s sysctls) restore() error {
	var errs []error
	for n, v := range s {
		if err := os.WriteFile(n, []byte(v), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// BenchmarkRootfulStart: one `podman run -d -p` and the first fetch
// through it, on the plugin's network against Podman's default bridge
// network (netavark's bridge with nftables), rootful, reservation off for
// both. Run with -benchtime=Nx: N rounds.
//
// The bridge writes an nftables table "inet netavark" and sets
// net.ipv4.ip_forward on the machine; both are undone at the end. Its
// subnet is moved off 10.88.0.0/16, which Podman 4's own default network
// on this machine would use too.
func BenchmarkRootfulStart(b *testing.B) {
	p := rootful(b)
	p.reservation(false)
	if err := p.r.write("/etc/containers/containers.conf.d/20-bench.conf", "[network]\ndefault_subnet = \"10.213.77.0/24\"\n", 0o644); err != nil {
		b.Fatal(err)
	}
	saved := saveSysctls(b, "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
	_, hadTable := p.r.chroot(context.Background(), "nft", "list", "table", "inet", "netavark")
	b.Cleanup(func() {
		if hadTable != nil {
			if out, err := p.r.chroot(context.Background(), "nft", "delete", "table", "inet", "netavark"); err != nil {
				b.Errorf("cleanup: nft delete table inet netavark: %v: %s", err, out)
			}
		}
		if err := saved.restore(); err != nil {
			b.Errorf("cleanup: sysctls: %v", err)
		}
		_ = os.Remove(p.r.path("/etc/containers/containers.conf.d/20-bench.conf"))
	})
	p.network("pp5bench", "passt-portmap")
	b.ResetTimer()
	interleave(b, p, []variant{{"plugin", "pp5bench"}, {"bridge", "podman"}})
}

// bindDriver runs the plugin as a child of a shell, not as netavark's:
// it then cannot tell that rootless Podman forwards the ports and binds
// them in the rootless network namespace, as it did before it could.
const bindDriver = `#!/bin/sh
/usr/libexec/netavark/passt-portmap "$@"
`

// BenchmarkRootlessStart: one `podman run -d -p` and the first fetch
// through it, rootless: the plugin as it is (rootlessport forwards, the
// plugin binds nothing), the plugin binding the ports in the rootless
// network namespace anyway (bindDriver), and Podman's default bridge
// network.
func BenchmarkRootlessStart(b *testing.B) {
	p := rootlessPodman(b)
	if err := p.r.write("/usr/libexec/netavark/passt-portmap-bind", bindDriver, 0o755); err != nil {
		b.Fatal(err)
	}
	p.network("pp5skip", "passt-portmap")
	p.network("pp5bind", "passt-portmap-bind")
	b.ResetTimer()
	interleave(b, p, []variant{{"plugin", "pp5skip"}, {"plugin-binding", "pp5bind"}, {"bridge", "podman"}})
}
