// Command ppbench measures what adding and removing port forwarding costs
// with passt-portmap, against pesto (the forwarder's own C client) and the
// portmap plugin of containernetworking/plugins with its iptables and its
// nftables backend, on one machine in one run. It is run by
// scripts/bench.sh, which prepares the binaries; run as root inside a
// network namespace of its own (it refuses the initial one, because
// portmap rewrites the namespace's netfilter rules).
//
// Every command is run as a runtime runs it: a new process, environment
// and configuration on stdin, timed from just before the fork to the
// reaping of the process, with the process tree's peak RSS from wait4.
// Commands compared with each other alternate run by run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is the command line.
type Config struct {
	PastaDir   string
	Plugin     string
	Portmap    string
	Work       string
	Out        string
	Runs       int
	ScaleRuns  int
	BigRuns    int
	ConcRounds int
	ConcSingle int
	Others     int
	Budget     time.Duration
	Only       string
	Prefix     string
	CPUProfile string
	From       string
	// The pod cases: the directory of the CNI plugins (bridge,
	// host-local, portmap and passt-portmap), extra keys of the chained
	// passt-portmap, runs per command, and managed pods on the node.
	CNIBin      string
	ChainedConf string
	PodRuns     int
	NodePods    int
	StatusRuns  int
}

// Bench holds the test bed and the tools.
type Bench struct {
	cfg    Config
	env    *Env
	ppV    *cniTool // passt-portmap, verified (the default)
	ppNV   *cniTool // passt-portmap, "verify": false
	pesto  *pestoTool
	pestoN *pestoTool // one pesto per mapping
	pmIPT  *cniTool
	pmNFT  *cniTool
	// pod cases (libcni, a fresh namespace per pod)
	podManaged, podBridge, podChained *podTool
	prev                              map[string]any  // prevResult handed to every plugin
	straced                           map[string]bool // strace modes done per CNI command
	R                                 *Report
}

func main() {
	var cfg Config
	flag.StringVar(&cfg.PastaDir, "pasta-dir", "", "directory holding pasta and pesto (scripts/fetch-pasta.sh prints it)")
	flag.StringVar(&cfg.Plugin, "plugin", "", "passt-portmap binary (empty: measure only the peers)")
	flag.StringVar(&cfg.Portmap, "portmap", "", "portmap binary of containernetworking/plugins (empty: skip portmap)")
	flag.StringVar(&cfg.Work, "work", "/tmp/h6b", "work directory (sockets, PID file, plugin data)")
	flag.StringVar(&cfg.Out, "out", "", "directory for results.json, add.dat (default: WORK/out)")
	flag.IntVar(&cfg.Runs, "runs", 200, "runs of each command in the one-mapping pairs")
	flag.IntVar(&cfg.ScaleRuns, "scale-runs", 10, "runs of each command in the scaling cases")
	flag.IntVar(&cfg.BigRuns, "big-runs", 10, "runs of each command in the 1,000 and 10,000 cases")
	flag.IntVar(&cfg.ConcRounds, "conc-rounds", 3, "bursts of 64 ADDs and 64 DELs (portmap: 1)")
	flag.IntVar(&cfg.ConcSingle, "conc-single", 20, "single ADDs of passt-portmap and pesto before the bursts (the reference of the p99 target)")
	flag.IntVar(&cfg.Others, "others", 250, "rules of other containers in the crowded-table case")
	flag.DurationVar(&cfg.Budget, "budget", 30*time.Second, "time budget of one command in one case")
	flag.StringVar(&cfg.Only, "only", "", "comma-separated cases to run (one,scale,others,range,compact,conc,mem,pods,node,status,inproc); empty: all")
	flag.StringVar(&cfg.CNIBin, "cni-bin", "", "directory of the CNI plugins bridge, host-local, portmap and passt-portmap (the pod cases)")
	flag.StringVar(&cfg.ChainedConf, "chained-conf", "", "JSON object of extra keys for passt-portmap chained after bridge (the pod case)")
	flag.IntVar(&cfg.PodRuns, "pod-runs", 30, "runs of each command in the pod and node-scale cases")
	flag.IntVar(&cfg.StatusRuns, "status-runs", 50, "runs of each command in the STATUS case")
	flag.IntVar(&cfg.NodePods, "node-pods", 110, "managed pods already on the node in the node-scale case (Kubernetes' default maximum per node)")
	flag.StringVar(&cfg.Prefix, "prefix", "h6b-", "prefix of the namespaces and links this program makes")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the inproc case (the client library's own work) to this file")
	flag.StringVar(&cfg.From, "from", "", "only write the report (figures.md, add.dat, add.gp into -out) from this results.json")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if cfg.Out == "" {
		cfg.Out = filepath.Join(cfg.Work, "out")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Fatalf("ppbench: %v", err)
	}
}

func (c Config) want(name string) bool {
	if c.Only == "" {
		return true
	}
	for _, s := range strings.Split(c.Only, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

func run(ctx context.Context, cfg Config) error {
	if cfg.From != "" {
		b, err := os.ReadFile(cfg.From)
		if err != nil {
			return fmt.Errorf("read results: %w", err)
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("decode %s: %w", cfg.From, err)
		}
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		return r.write(cfg.Out)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (it makes network namespaces and starts pasta)")
	}
	if ns, err := namedNetns(); err != nil {
		return err
	} else if ns == "" {
		return fmt.Errorf("refusing to run outside a named network namespace: portmap would rewrite this namespace's netfilter rules; run it under `ip netns exec NAME` (scripts/bench.sh does)")
	} else {
		log.Printf("in network namespace %s", ns)
	}
	if cfg.PastaDir == "" {
		return fmt.Errorf("-pasta-dir is required")
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	env := &Env{Prefix: cfg.Prefix, Dir: cfg.Work, PastaBin: filepath.Join(cfg.PastaDir, "pasta"), PestoBin: filepath.Join(cfg.PastaDir, "pesto")}
	defer env.Close()
	if err := env.Start(ctx); err != nil {
		return err
	}
	log.Printf("pasta %d on %s, attached to netns %s", env.PastaPID, env.Sock, env.PastaNS)
	b := &Bench{cfg: cfg, env: env, R: newReport(cfg), straced: map[string]bool{}}
	b.setupTools()
	if err := flushNetfilter(ctx); err != nil {
		return err
	}

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"one", b.caseOne},
		{"scale", b.caseScale},
		{"others", b.caseOthers},
		{"range", func(ctx context.Context) error { return b.caseBig(ctx, "range", 1000, 40000) }},
		{"compact", func(ctx context.Context) error { return b.caseBig(ctx, "compact", 10000, 41000) }},
		{"conc", b.caseConc},
		{"mem", b.caseMem},
		{"pods", b.casePods},
		{"node", b.caseNode},
		{"status", b.caseStatus},
		{"inproc", b.caseInproc},
	}
	for _, s := range steps {
		if !cfg.want(s.name) {
			continue
		}
		log.Printf("case %s", s.name)
		start := time.Now()
		if err := s.fn(ctx); err != nil {
			b.R.Errors = append(b.R.Errors, s.name+": "+err.Error())
			log.Printf("case %s: %v", s.name, err)
			if ctx.Err() != nil {
				break
			}
		}
		b.R.CaseTime[s.name] = time.Since(start)
		if err := b.cleanState(ctx); err != nil {
			return err
		}
	}
	return b.R.write(cfg.Out)
}

func (b *Bench) setupTools() {
	env := b.env
	prev := map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": "/run/netns/" + env.CtrNS}},
		"ips":        []any{map[string]any{"address": env.CtrIP + "/24", "interface": 0}},
	}
	pestoArgv := resolveWrapper(env.PestoBin)
	b.pesto = &pestoTool{name: "pesto", argv: pestoArgv, sock: env.Sock}
	b.pestoN = &pestoTool{name: "pesto, one call per mapping", argv: pestoArgv, sock: env.Sock, perPort: true}
	b.prev = prev
	if b.cfg.Plugin != "" {
		b.ppV = b.newPP("passt-portmap", true)
		b.ppNV = b.newPP("passt-portmap, unverified", false)
	}
	if b.cfg.Portmap != "" {
		mk := func(name, backend string) *cniTool {
			return &cniTool{name: name, binary: b.cfg.Portmap, cniPath: filepath.Dir(b.cfg.Portmap),
				netns: "/run/netns/" + env.CtrNS, ifname: "eth0", prev: prev,
				extra: map[string]any{"backend": backend}}
		}
		b.pmIPT = mk("portmap (iptables)", "iptables")
		b.pmNFT = mk("portmap (nftables)", "nftables")
	}
}

// newPP makes a passt-portmap tool on the bench's forwarder.
func (b *Bench) newPP(name string, verify bool) *cniTool {
	return &cniTool{name: name, binary: b.cfg.Plugin, cniPath: filepath.Dir(b.cfg.Plugin),
		netns: "/run/netns/" + b.env.PastaNS, ifname: "eth0", prev: b.prev,
		extra: map[string]any{"socket": b.env.Sock, "pidFile": b.env.PIDFile,
			"dataDir": filepath.Join(b.cfg.Work, "data"), "verify": verify}}
}

// cleanState empties the forwarder's HOST table and this namespace's
// netfilter rules, and the plugin's data directory.
func (b *Bench) cleanState(ctx context.Context) error {
	if err := setHost(ctx, b.env.Sock, nil); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(b.cfg.Work, "data")); err != nil {
		return fmt.Errorf("clean plugin data: %w", err)
	}
	return flushNetfilter(ctx)
}

// check reports whether the first mapping of c is in place for tool t.
func (b *Bench) check(ctx context.Context, t Tool, c Container) (bool, error) {
	port := c.Maps[0].HostPort
	if ct, ok := t.(*cniTool); ok {
		switch ct.extra["backend"] {
		case "iptables":
			out, err := sh(ctx, "iptables-save", "-t", "nat")
			return containsWord(out, "--dport "+strconv.Itoa(port)), err
		case "nftables":
			out, err := sh(ctx, "nft", "list", "ruleset")
			return containsWord(out, "dport "+strconv.Itoa(port)), err
		}
	}
	ts, err := readTables(ctx, b.env.Sock)
	if err != nil {
		return false, err
	}
	host := ts.Lookup("HOST")
	if host == nil {
		return false, fmt.Errorf("no HOST table")
	}
	for _, r := range host.Rules {
		if int(r.First) <= port && port <= int(r.Last) {
			return true, nil
		}
	}
	return false, nil
}

// containsWord: s contains w followed by a non-digit or the end.
func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		end := i + j + len(w)
		if end == len(s) || s[end] < '0' || s[end] > '9' {
			return true
		}
		i = end
	}
}

// tools returns the non-nil tools among ts.
func tools(ts ...Tool) []Tool {
	var out []Tool
	for _, t := range ts {
		if t == nil {
			continue
		}
		if ct, ok := t.(*cniTool); ok && ct == nil {
			continue
		}
		out = append(out, t)
	}
	return out
}

// caseOne: one mapping, ADD then DEL, in pairs that alternate run by run.
func (b *Bench) caseOne(ctx context.Context) error {
	c := fixed("one", maps(20000, 1, 1))
	pairs := [][2]Tool{}
	if b.ppV != nil {
		pairs = append(pairs, [2]Tool{b.ppV, b.pesto}, [2]Tool{b.ppNV, b.pesto})
		if b.pmIPT != nil {
			pairs = append(pairs, [2]Tool{b.ppV, b.pmIPT}, [2]Tool{b.ppV, b.pmNFT})
		}
	} else if b.pmIPT != nil {
		pairs = append(pairs, [2]Tool{b.pesto, b.pmIPT}, [2]Tool{b.pesto, b.pmNFT})
	}
	for _, p := range pairs {
		log.Printf("  pair %s / %s", p[0].Name(), p[1].Name())
		res, err := cycle(ctx, []Entry{{p[0], c}, {p[1], c}}, b.cfg.Runs, b.cfg.Budget, b.check)
		if err != nil {
			return fmt.Errorf("pair %s / %s: %w", p[0].Name(), p[1].Name(), err)
		}
		b.R.Pairs = append(b.R.Pairs, Pair{A: res[0], B: res[1]})
	}
	return nil
}

// caseScale: ADD of N separate (non-adjacent) rules on a table with no
// other rules.
func (b *Bench) caseScale(ctx context.Context) error {
	for _, n := range []int{1, 10, 100, 250} {
		ms := maps(20000, n, 2)
		c := fixed("scale"+strconv.Itoa(n), ms)
		var es []Entry
		for _, t := range tools(b.ppV, b.ppNV, b.pesto, b.pestoN, b.pmIPT, b.pmNFT) {
			es = append(es, Entry{t, c})
		}
		log.Printf("  %d rules", n)
		res, err := cycle(ctx, es, b.cfg.ScaleRuns, b.cfg.Budget/3, b.check)
		if err != nil {
			return fmt.Errorf("%d rules: %w", n, err)
		}
		b.R.Scale = append(b.R.Scale, ScaleRow{Mappings: n, Kind: "separate", Results: res})
	}
	return nil
}

// caseOthers: ADD of one rule on a table that already holds cfg.Others
// rules of other containers.
func (b *Bench) caseOthers(ctx context.Context) error {
	others := maps(30000, b.cfg.Others, 2)
	if err := setHost(ctx, b.env.Sock, tcpRules(others)); err != nil {
		return err
	}
	row := OthersRow{Others: b.cfg.Others}
	// portmap's others: as many containers, one mapping each, added by
	// portmap itself (their ADD times show how it slows as it fills).
	for _, pm := range tools(b.pmIPT, b.pmNFT) {
		s := &Series{Tool: pm.Name(), Op: "ADD"}
		start := time.Now()
		for i, m := range others {
			sm, err := pm.Add(ctx, Container{ID: "other" + strconv.Itoa(i), Maps: []portMapping{m}})
			if err != nil {
				return fmt.Errorf("fill %s: %w", pm.Name(), err)
			}
			s.add(sm, nil)
		}
		log.Printf("  filled %s with %d containers in %v", pm.Name(), len(others), time.Since(start).Round(time.Millisecond))
		row.Fill = append(row.Fill, s)
	}
	c := fixed("crowd", maps(20000, 1, 1))
	var es []Entry
	for _, t := range tools(b.ppV, b.ppNV, b.pesto, b.pmIPT, b.pmNFT) {
		es = append(es, Entry{t, c})
	}
	res, err := cycle(ctx, es, b.cfg.ScaleRuns, b.cfg.Budget/3, b.check)
	if err != nil {
		return err
	}
	n, err := hostRules(ctx, b.env.Sock)
	if err != nil {
		return err
	}
	if n != len(others) {
		return fmt.Errorf("after the case the HOST table holds %d rules, want the %d of others", n, len(others))
	}
	row.Results = res
	b.R.Others = &row
	return nil
}

// caseBig: n consecutive mappings (they compact into one forwarder rule),
// beside the one-mapping ADD of passt-portmap in the same run.
func (b *Bench) caseBig(ctx context.Context, name string, n, first int) error {
	c := fixed(name, maps(first, n, 1))
	var es []Entry
	if b.ppV != nil {
		one := b.newPP("passt-portmap, 1 mapping", true)
		es = append(es, Entry{one, fixed(name+"-one", maps(20000, 1, 1))})
	}
	row := ScaleRow{Mappings: n, Kind: name}
	for _, t := range tools(b.ppV, b.ppNV, b.pesto, b.pmNFT, b.pmIPT) {
		if t == Tool(b.pmIPT) {
			// portmap's iptables backend runs two iptables commands per
			// rule, three rules per mapping: its time grows with the
			// mappings. Predict from the largest case measured so far.
			if p, from := b.R.predictIPT(n); p > b.cfg.Budget {
				row.Skipped = append(row.Skipped, fmt.Sprintf("%s not run: one ADD predicted to take %.0f s (quadratic from the %d-mapping case), over the %v budget", t.Name(), p.Seconds(), from, b.cfg.Budget))
				continue
			}
		}
		es = append(es, Entry{t, c})
	}
	log.Printf("  %d mappings", n)
	res, err := cycle(ctx, es, b.cfg.BigRuns, b.cfg.Budget/2, b.check)
	if err != nil {
		return err
	}
	row.Results = res
	b.R.Scale = append(b.R.Scale, row)
	return nil
}

// caseConc: 64 ADDs at once against one forwarder, then 64 DELs; the
// table is read after each burst. passt-portmap's and pesto's bursts
// alternate round by round, after a few single ADDs of each (the
// reference of the p99 target, from the same minutes).
func (b *Bench) caseConc(ctx context.Context) error {
	const n = 64
	if b.ppV != nil {
		log.Printf("  single ADDs, %s / %s", b.ppV.Name(), b.pesto.Name())
		res, err := cycle(ctx, []Entry{{b.ppV, fixed("conc-single", maps(20000, 1, 1))}, {b.pesto, fixed("conc-single", maps(20000, 1, 1))}}, b.cfg.ConcSingle, b.cfg.Budget, b.check)
		if err != nil {
			return fmt.Errorf("single ADDs: %w", err)
		}
		b.R.ConcSingle = &Pair{A: res[0], B: res[1]}
	}
	type job struct {
		t     Tool
		round int
	}
	var jobs []job
	for round := 0; round < b.cfg.ConcRounds; round++ {
		for _, t := range tools(b.ppV, b.pesto) {
			jobs = append(jobs, job{t, round})
		}
	}
	for _, t := range tools(b.pmIPT, b.pmNFT) {
		jobs = append(jobs, job{t, 0}) // slow: one round
	}
	for _, j := range jobs {
		// Whatever a command left behind must not make the next fail.
		if err := b.cleanState(ctx); err != nil {
			return err
		}
		t := j.t
		ctrs := containers(fmt.Sprintf("conc%d-", j.round), n, 21000)
		if p, ok := t.(interface{ Prepare(Container) error }); ok {
			for _, c := range ctrs {
				if err := p.Prepare(c); err != nil {
					return err
				}
			}
		}
		for _, op := range []string{"ADD", "DEL"} {
			r := burst(ctx, t, op, ctrs)
			want := n
			if op == "DEL" {
				want = 0
			}
			r.WantPlace = want
			in, err := b.inPlace(ctx, t, ctrs)
			if err != nil {
				return err
			}
			r.InPlace = in
			log.Printf("  %s %d x %s: %d ok in %v, %d in place (want %d)", t.Name(), n, op, r.OK, r.Total.Round(time.Millisecond), in, want)
			b.R.Conc = append(b.R.Conc, r)
		}
	}
	return nil
}

// caseMem measures the peak RSS of one ADD (and DEL) of each command,
// under GNU time: one mapping, and 10,000 consecutive ones.
func (b *Bench) caseMem(ctx context.Context) error {
	dir := filepath.Join(b.cfg.Work, "mem")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mem: %w", err)
	}
	for _, n := range []int{1, 10000} {
		c := fixed("mem"+strconv.Itoa(n), maps(41000, n, 1))
		var es []Entry
		for i, t := range tools(b.ppV, b.ppNV, b.pesto, b.pmIPT, b.pmNFT) {
			f := filepath.Join(dir, strconv.Itoa(i))
			switch t := t.(type) {
			case *cniTool:
				if t == b.pmIPT && n > 1 {
					continue
				}
				m := &cniTool{name: t.name, binary: t.binary, cniPath: t.cniPath, netns: t.netns, ifname: t.ifname, extra: t.extra, prev: t.prev, memFile: f}
				es = append(es, Entry{m, c})
			case *pestoTool:
				m := *t
				m.memFile = f
				es = append(es, Entry{&m, c})
			}
		}
		runs := 10
		if n > 1 {
			runs = 3
		}
		log.Printf("  %d mappings", n)
		res, err := cycle(ctx, es, runs, b.cfg.Budget/2, b.check)
		if err != nil {
			return err
		}
		b.R.Mem = append(b.R.Mem, ScaleRow{Mappings: n, Kind: "mem", Results: res})
	}
	return nil
}

// inPlace counts the containers whose mapping is in place.
func (b *Bench) inPlace(ctx context.Context, t Tool, ctrs []Container) (int, error) {
	n := 0
	for _, c := range ctrs {
		ok, err := b.check(ctx, t, c)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// writeJSON writes v to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return os.WriteFile(path, b, 0o644)
}
