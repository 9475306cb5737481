package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Step is one measured part of an ADD.
type Step struct {
	Name   string        `json:"name"`
	Others int           `json:"others"` // rules of others in the HOST table
	N      int           `json:"n"`
	Median time.Duration `json:"median_ns"`
	P90    time.Duration `json:"p90_ns"`
	Err    string        `json:"error,omitempty"`
	Note   string        `json:"note,omitempty"`
}

func timeN(n int, fn func() error) (med, p90 time.Duration, err error) {
	d := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		s := time.Now()
		if err := fn(); err != nil {
			return 0, 0, err
		}
		d = append(d, time.Since(s))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return median(d), quantile(d, 0.9), nil
}

// caseInproc splits an ADD into its parts: process start, the forwarder's
// transaction (connect, hello, tables; the switch with its rebind), the
// client library with and without verification, and the pure-Go codec and
// translation, with no other rules and with cfg.Others rules of others.
func (b *Bench) caseInproc(ctx context.Context) error {
	const n = 200
	add := func(s Step) {
		b.R.Steps = append(b.R.Steps, s)
		log.Printf("  %-55s others=%-3d median %s ms", s.Name, s.Others, ms(s.Median))
	}
	stepN := func(name string, others, n int, fn func() error) {
		med, p90, err := timeN(n, fn)
		s := Step{Name: name, Others: others, N: n, Median: med, P90: p90}
		if err != nil {
			s.Err = err.Error()
		}
		add(s)
	}
	stepOf := func(name string, others int, fn func() error) { stepN(name, others, n, fn) }

	// Process start-up floors.
	stepOf("exec /bin/true (fork, exec, wait)", 0, func() error {
		_, _, err := runTimed(ctx, []string{"/bin/true"}, baseEnv(), nil)
		return err
	})
	if b.cfg.Plugin != "" {
		stepOf("exec passt-portmap, CNI VERSION (Go start-up, no socket)", 0, func() error {
			_, _, err := runTimed(ctx, []string{b.cfg.Plugin}, baseEnv("CNI_COMMAND=VERSION"), []byte(`{"cniVersion":"1.0.0"}`))
			return err
		})
	}

	if b.ppV != nil {
		if err := b.straceOne(ctx); err != nil {
			log.Printf("  strace: %v", err)
		}
	}

	rule := wire.NewRule(wire.Proto(6), netip.MustParseAddr("127.0.0.1"), 20000, 20000, 20000, 0)
	if b.cfg.CPUProfile != "" {
		f, err := os.Create(b.cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	for _, others := range []int{0, b.cfg.Others} {
		if err := setHost(ctx, b.env.Sock, tcpRules(maps(30000, others, 2))); err != nil {
			return err
		}
		stepOf("exec pesto SOCK (read-only transaction, C)", others, func() error {
			_, _, err := runTimed(ctx, append(append([]string(nil), b.pesto.argv...), b.env.Sock), baseEnv(), nil)
			return err
		})
		stepOf("raw: connect, hello, tables, close", others, func() error {
			_, err := readTables(ctx, b.env.Sock)
			return err
		})
		flip := false
		stepOf("raw: one transaction adding/removing 1 rule, then a read (rebind done)", others, func() error {
			flip = !flip
			return rawToggle(ctx, b.env.Sock, rule, flip)
		})
		if others == 0 {
			for _, n := range []int{1000, 10000} {
				big := wire.NewRule(wire.Proto(6), netip.MustParseAddr("127.0.0.1"), 41000, uint16(41000+n-1), 41000, 0)
				flip := false
				stepN(fmt.Sprintf("raw: same, with one rule of a %d-port range", n), others, 20, func() error {
					flip = !flip
					return rawToggle(ctx, b.env.Sock, big, flip)
				})
			}
		}
		if err := setHost(ctx, b.env.Sock, tcpRules(maps(30000, others, 2))); err != nil {
			return err
		}
		cl := &ctlclient.Client{Path: b.env.Sock, PIDFile: b.env.PIDFile}
		stepOf("ctlclient.Read", others, func() error {
			_, err := cl.Read(ctx)
			return err
		})
		for _, verify := range []bool{false, true} {
			name := "ctlclient.Update add+remove 1 rule, unverified (per update)"
			if verify {
				name = "ctlclient.Update add+remove 1 rule, verified (per update)"
			}
			flip := false
			stepOf(name, others, func() error {
				flip = !flip
				plan := func(wire.Tables) ([]wire.Edit, error) {
					if flip {
						return []wire.Edit{{Pif: "HOST", Add: []wire.Rule{rule}}}, nil
					}
					return []wire.Edit{{Pif: "HOST", Remove: []wire.Rule{rule}}}, nil
				}
				res, err := cl.Update(ctx, plan, ctlclient.UpdateOptions{NoVerify: !verify})
				if err != nil {
					return err
				}
				if verify && res.Status != ctlclient.StatusSuccess {
					return fmt.Errorf("status %d", res.Status)
				}
				return nil
			})
		}
		stepOf("ctlclient.Verify of 1 rule (read + listeners)", others, func() error {
			_, err := cl.Verify(ctx, nil)
			return err
		})
	}
	if err := setHost(ctx, b.env.Sock, nil); err != nil {
		return err
	}

	// Pure Go: codec and translation (testing.Benchmark, ns/op).
	full := wire.Tables{wire.NewTable(1, "HOST", 0x0f, tcpRules(maps(30000, 255, 2))...),
		wire.NewTable(3, "SPLICE", 0x2f, tcpRules(maps(1000, 4, 2))...)}
	enc := append(wire.DefaultHello().Append(nil), full.AppendServer(nil)...)
	bench := func(name string, fn func() error) {
		var ferr error
		r := testing.Benchmark(func(tb *testing.B) {
			for i := 0; i < tb.N; i++ {
				if err := fn(); err != nil {
					ferr = err
					tb.FailNow()
				}
			}
		})
		s := Step{Name: name, N: r.N, Median: time.Duration(r.NsPerOp()), Note: fmt.Sprintf("%d B/op, %d allocs/op (mean)", r.AllocedBytesPerOp(), r.AllocsPerOp())}
		if ferr != nil {
			s.Err = ferr.Error()
		}
		add(s)
	}
	bench("wire: decode hello + 259 rules", func() error {
		r := bytes.NewReader(enc)
		if _, err := wire.ReadHello(r); err != nil {
			return err
		}
		_, err := wire.ReadServerTables(bufio.NewReader(r), wire.HelloSize)
		return err
	})
	bench("wire: encode 259 rules (client)", func() error {
		_ = full.AppendClient(make([]byte, 0, 16<<10))
		return nil
	})
	var tms []translate.PortMapping
	for _, m := range maps(41000, 10000, 1) {
		tms = append(tms, translate.PortMapping{HostPort: m.HostPort, ContainerPort: m.ContainerPort, Protocol: m.Protocol, HostIP: m.HostIP})
	}
	bench("translate.Rules: 1 mapping", func() error {
		_, err := translate.Rules(tms[:1], translate.Options{}, 0x0f)
		return err
	})
	bench("translate.Rules: 10,000 mappings into 1 rule", func() error {
		_, err := translate.Rules(tms, translate.Options{}, 0x0f)
		return err
	})
	t250 := wire.NewTable(1, "HOST", 0x0f, tcpRules(maps(30000, 250, 2))...)
	bench("translate.Plan: +1 rule on a table of 250", func() error {
		_, err := translate.Plan(t250, nil, []wire.Rule{rule})
		return err
	})
	return nil
}

// rawToggle adds (or removes) r in HOST in one transaction, then reads the
// tables on a new connection: the server accepts it only after it has
// switched tables and re-opened every listening socket.
func rawToggle(ctx context.Context, sock string, r wire.Rule, addIt bool) error {
	conn, err := dialRetry(ctx, sock)
	if err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	h, err := wire.ReadHello(br)
	if err == nil {
		err = h.Check()
	}
	var ts wire.Tables
	if err == nil {
		ts, err = wire.ReadServerTables(br, wire.HelloSize)
	}
	if err != nil {
		conn.Close()
		return err
	}
	host := ts.Lookup("HOST")
	e := wire.Edit{Pif: "HOST"}
	if addIt {
		e.Add = []wire.Rule{r}
	} else {
		e.Remove = []wire.Rule{r}
	}
	*host = host.Apply(e)
	_, err = conn.Write(ts.AppendClient(nil))
	conn.Close()
	if err != nil {
		return err
	}
	_, err = readTables(ctx, sock)
	return err
}

// straceOne runs one verified ADD and one DEL of passt-portmap under
// `strace -f -c` (a syscall count and time summary) and `strace -f -r`
// (each syscall with the time since the previous one), into the output
// directory.
func (b *Bench) straceOne(ctx context.Context) error {
	path, err := exec.LookPath("strace")
	if err != nil {
		return fmt.Errorf("strace not installed: %w", err)
	}
	c := Container{ID: "strace", Maps: maps(20000, 1, 1)}
	conf, err := b.ppV.config(c)
	if err != nil {
		return err
	}
	for _, op := range []string{"ADD", "DEL", "ADD", "DEL"} {
		mode := "-c"
		if b.straced[op] {
			mode = "-r"
		}
		out := filepath.Join(b.cfg.Out, "strace-"+strings.ToLower(op)+mode+".txt")
		env := baseEnv("CNI_COMMAND="+op, "CNI_CONTAINERID="+c.ID, "CNI_NETNS="+b.ppV.netns,
			"CNI_IFNAME="+b.ppV.ifname, "CNI_PATH="+b.ppV.cniPath)
		if _, _, err := runTimed(ctx, []string{path, "-f", mode, "-o", out, b.cfg.Plugin}, env, conf); err != nil {
			return fmt.Errorf("strace %s: %w", op, err)
		}
		b.straced[op] = true
	}
	return nil
}
