package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Pair is two commands measured alternately in the same run.
type Pair struct {
	A *Result `json:"a"`
	B *Result `json:"b"`
}

// ScaleRow is one size of the scaling cases.
type ScaleRow struct {
	Mappings int       `json:"mappings"`
	Kind     string    `json:"kind"` // separate, range, compact
	Results  []*Result `json:"results"`
	Skipped  []string  `json:"skipped,omitempty"`
}

// OthersRow is the crowded-table case.
type OthersRow struct {
	Others  int       `json:"others"`
	Fill    []*Series `json:"fill"` // portmap ADDs of the others, in order
	Results []*Result `json:"results"`
}

// Report is everything measured; it is written as results.json.
type Report struct {
	Started  time.Time                `json:"started"`
	Config   Config                   `json:"config"`
	Pairs    []Pair                   `json:"pairs"`
	Scale    []ScaleRow               `json:"scale"`
	Others   *OthersRow               `json:"others,omitempty"`
	Conc     []*ConcResult            `json:"concurrency"`
	Mem      []ScaleRow               `json:"memory"` // peak RSS under GNU time
	Steps    []Step                   `json:"steps"`
	Errors   []string                 `json:"errors,omitempty"`
	CaseTime map[string]time.Duration `json:"case_time_ns"`
}

func newReport(cfg Config) *Report {
	return &Report{Started: time.Now().UTC(), Config: cfg, CaseTime: map[string]time.Duration{}}
}

// find returns the result of tool in rs.
func find(rs []*Result, tool string) *Result {
	for _, r := range rs {
		if r != nil && r.Tool == tool {
			return r
		}
	}
	return nil
}

// predictIPT predicts one ADD of n mappings by portmap's iptables backend
// from the largest case measured so far (its cost grows with the mappings).
func (r *Report) predictIPT(n int) (time.Duration, int) {
	var best time.Duration
	bestN := 0
	for _, row := range r.Scale {
		if x := find(row.Results, "portmap (iptables)"); x != nil && row.Mappings > bestN {
			if s := summarize(x.Add); s.N > 0 {
				best, bestN = s.Median, row.Mappings
			}
		}
	}
	if bestN == 0 {
		return 0, 0
	}
	return best * time.Duration(n) / time.Duration(bestN), bestN
}

// write writes results.json, add.dat and add.gp (the chart) and
// figures.md into dir.
func (r *Report) write(dir string) error {
	if err := writeJSON(filepath.Join(dir, "results.json"), r); err != nil {
		return err
	}
	if err := r.writeChart(dir); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "figures.md"), []byte(r.markdown()), 0o644)
}

// chartTools are the series of the chart, in order.
var chartTools = []string{"passt-portmap", "passt-portmap, unverified", "pesto", "pesto, one call per mapping", "portmap (iptables)", "portmap (nftables)"}

func (r *Report) writeChart(dir string) error {
	var b strings.Builder
	b.WriteString("# mappings, then per tool: median p10 p90 of ADD in ms; ? = not measured\n# tools: " + strings.Join(chartTools, " | ") + "\n")
	for _, row := range r.Scale {
		fmt.Fprintf(&b, "%d", row.Mappings)
		for _, t := range chartTools {
			x := find(row.Results, t)
			if x == nil || summarize(x.Add).N == 0 {
				b.WriteString(" ? ? ?")
				continue
			}
			s := summarize(x.Add)
			f := func(d time.Duration) float64 { return float64(d) / 1e6 }
			fmt.Fprintf(&b, " %.4f %.4f %.4f", f(s.Median), f(s.P10), f(s.P90))
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "add.dat"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	gp := `set terminal pngcairo size 1100,680 font "DejaVu Sans,12"
set output "add.png"
set title "ADD of N port mappings: one process run as a runtime runs it (median, bars p10-p90)"
set xlabel "port mappings in one ADD (1-250: separate rules; 1,000 and 10,000: consecutive ports)"
set ylabel "wall time of one ADD (ms, log scale)"
set logscale xy
set xtics ("1" 1, "10" 10, "100" 100, "250" 250, "1,000" 1000, "10,000" 10000)
set grid xtics ytics mytics
set key top left box opaque
set format y "%g"
set datafile missing "?"
set xrange [0.8:13000]
set arrow from 500, graph 0 to 500, graph 1 nohead dt 3 lc rgb "#888888"
set label "separate rules" at 420, graph 0.04 right textcolor rgb "#666666"
set label "consecutive ports" at 600, graph 0.04 left textcolor rgb "#666666"
plot "add.dat" using 1:2:3:4 with yerrorlines lw 3 pt 7 lc rgb "#1b7837" title "passt-portmap (verified)", \
     "" using 1:5:6:7 with yerrorlines lw 2 pt 6 dt 2 lc rgb "#5aae61" title "passt-portmap, unverified", \
     "" using 1:8:9:10 with yerrorlines lw 2 pt 5 lc rgb "#2166ac" title "pesto, one call", \
     "" using 1:11:12:13 with yerrorlines lw 2 pt 4 dt 3 lc rgb "#67a9cf" title "pesto, one call per mapping (Podman's way)", \
     "" using 1:14:15:16 with yerrorlines lw 2 pt 9 lc rgb "#b2182b" title "portmap, iptables backend", \
     "" using 1:17:18:19 with yerrorlines lw 2 pt 11 lc rgb "#ef8a62" title "portmap, nftables backend"
`
	return os.WriteFile(filepath.Join(dir, "add.gp"), []byte(gp), 0o644)
}

func cell(s *Series) string {
	if s == nil {
		return "–"
	}
	sm := summarize(s)
	if sm.N == 0 {
		if s.Failed > 0 {
			return "failed"
		}
		return "–"
	}
	if sm.N == 1 {
		return ms(sm.Median) + " (1 run)"
	}
	return fmt.Sprintf("%s (%s–%s)", ms(sm.Median), ms(sm.P10), ms(sm.P90))
}

func med(s *Series) time.Duration {
	if s == nil {
		return 0
	}
	return summarize(s).Median
}

// Target is one target of the benchmark suite with its verdict.
type Target struct {
	What, Figure string
	Met          *bool
}

func verdict(ok bool) *bool { return &ok }

func (r *Report) pair(a, b string) *Pair {
	for i := range r.Pairs {
		if r.Pairs[i].A.Tool == a && r.Pairs[i].B.Tool == b {
			return &r.Pairs[i]
		}
	}
	return nil
}

func (r *Report) targets() []Target {
	var ts []Target
	pr := func(a, b string, limit float64, what string) {
		t := Target{What: what, Figure: "not measured"}
		if p := r.pair(a, b); p != nil {
			x, y := med(p.A.Add), med(p.B.Add)
			q, n := pairedRatio(p.A.Add.Wall, p.B.Add.Wall)
			if x > 0 && y > 0 && n > 0 {
				t.Figure = fmt.Sprintf("median of %d paired runs: **%.2fx** (ratio of medians %s / %s ms = %.2fx; of p10s %s)", n, q, ms(x), ms(y), float64(x)/float64(y), ratio(summarize(p.A.Add).P10, summarize(p.B.Add).P10))
				t.Met = verdict(q <= limit)
			}
		}
		ts = append(ts, t)
	}
	pr("passt-portmap", "pesto", 1.5, "one-mapping ADD, verified, ≤ 1.5x pesto's add")
	pr("passt-portmap, unverified", "pesto", 1.2, "one-mapping ADD, unverified, ≤ 1.2x pesto's add")
	pr("passt-portmap", "portmap (iptables)", 0.2, "one-mapping ADD (verified) ≤ 0.2x portmap, iptables backend")
	pr("passt-portmap", "portmap (nftables)", 0.5, "one-mapping ADD (verified) ≤ 0.5x portmap, nftables backend")
	t := Target{What: "10,000 compactable mappings ≤ 1.5x the one-mapping ADD (verified, same run)", Figure: "not measured"}
	for _, row := range r.Scale {
		if row.Kind != "compact" {
			continue
		}
		bs, ones := resAdd(find(row.Results, "passt-portmap")), resAdd(find(row.Results, "passt-portmap, 1 mapping"))
		if bs == nil || ones == nil {
			continue
		}
		big, one := med(bs), med(ones)
		q, n := pairedRatio(bs.Wall, ones.Wall)
		if big > 0 && one > 0 && n > 0 {
			t.Figure = fmt.Sprintf("median of %d paired runs: **%.2fx** (%s ms / %s ms)", n, q, ms(big), ms(one))
			t.Met = verdict(q <= 1.5)
		}
	}
	ts = append(ts, t)
	t = Target{What: "64 concurrent ADDs: all succeed, nothing lost; p99 < 20x the single ADD median", Figure: "not measured"}
	var single time.Duration
	if p := r.pair("passt-portmap", "pesto"); p != nil {
		single = med(p.A.Add)
	}
	okAll, n, worst := true, 0, time.Duration(0)
	for _, c := range r.Conc {
		if c.Tool != "passt-portmap" {
			continue
		}
		n++
		if c.OK != c.Calls || c.InPlace != c.WantPlace {
			okAll = false
		}
		if c.Op == "ADD" {
			worst = max(worst, summarize(c.Series).P99)
		}
	}
	if n > 0 && single > 0 {
		q := float64(worst) / float64(single)
		t.Figure = fmt.Sprintf("%d bursts, all calls ok and tables right: %v; worst p99 %s ms = **%.1fx** the single ADD (%s ms)", n/2, okAll, ms(worst), q, ms(single))
		t.Met = verdict(okAll && q < 20)
	}
	ts = append(ts, t)
	t = Target{What: "peak RSS of one ADD < 20 MiB", Figure: "not measured"}
	var parts []string
	var one int64
	for _, row := range r.Mem {
		if x := find(row.Results, "passt-portmap"); x != nil {
			if sm := summarize(x.Add); sm.N > 0 {
				parts = append(parts, fmt.Sprintf("%d mapping(s): %.1f MiB", row.Mappings, float64(sm.MaxRSSPk)/1024))
				if row.Mappings == 1 {
					one = sm.MaxRSSPk
				}
			}
		}
	}
	if one > 0 {
		t.Figure = "highest of the runs, " + strings.Join(parts, "; ")
		t.Met = verdict(one < 20*1024)
	}
	ts = append(ts, t)
	return ts
}

func resAdd(r *Result) *Series {
	if r == nil {
		return nil
	}
	return r.Add
}

func (r *Report) markdown() string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	w("## Targets\n\n| target | figure | verdict |\n|---|---|---|\n")
	for _, t := range r.targets() {
		v := "not measured"
		if t.Met != nil {
			v = "**not met**"
			if *t.Met {
				v = "met"
			}
		}
		w("| %s | %s | %s |\n", t.What, t.Figure, v)
	}
	w("\nAll times are wall-clock milliseconds of one whole process (fork to reaping), median with p10–p90 in brackets.\n")

	w("\n## 1. One mapping: ADD and DEL, pair by pair\n\n")
	w("Each pair ran alternately (A then B, then B then A, ...), each run an ADD and then a DEL of the same mapping (`127.0.0.1:20000` TCP) on the same forwarder.\n\n")
	w("A/B is the median over runs of the ratio within one run (the two commands ran back to back, so a load spike that slows both cancels); the ratio of the medians follows in brackets.\n\n")
	w("| A | B | runs | A ADD | B ADD | ADD A/B | A DEL | B DEL | DEL A/B |\n|---|---|---|---|---|---|---|---|---|\n")
	pq := func(a, b *Series) string {
		q, n := pairedRatio(a.Wall, b.Wall)
		if n == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2fx (%s)", q, ratio(med(a), med(b)))
	}
	for _, p := range r.Pairs {
		w("| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |\n", p.A.Tool, p.B.Tool, len(p.A.Add.Wall), len(p.B.Add.Wall),
			cell(p.A.Add), cell(p.B.Add), pq(p.A.Add, p.B.Add), cell(p.A.Del), cell(p.B.Del), pq(p.A.Del, p.B.Del))
	}
	for i := range r.Pairs {
		p := &r.Pairs[i]
		for _, x := range []*Result{p.A, p.B} {
			if x.Note != "" || x.Add.Failed+x.Del.Failed > 0 {
				w("\n- %s (pair with %s): %s failures %d/%d %s %s", x.Tool, other(p, x).Tool, x.Note, x.Add.Failed, x.Del.Failed, x.Add.LastErr, x.Del.LastErr)
			}
		}
	}

	w("\n\n## 2. Scaling: ADD of N mappings\n\n")
	w("1–250: N mappings on ports 20000, 20002, ... (never adjacent, so N separate forwarder rules) on a HOST table with no other rules. 1,000 and 10,000: consecutive ports, which passt-portmap compacts into one rule and pesto gets as one range. All commands of a row alternate run by run. `pesto` gets all mappings in one call; `pesto, one call per mapping` is how Podman and rootlesskit drive it.\n\n")
	var cols []string
	for _, t := range append([]string{"passt-portmap, 1 mapping"}, chartTools...) {
		for _, row := range r.Scale {
			if find(row.Results, t) != nil {
				cols = append(cols, t)
				break
			}
		}
	}
	w("| mappings | %s |\n|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for _, row := range r.Scale {
		w("| %d (%s) |", row.Mappings, row.Kind)
		for _, t := range cols {
			w(" %s |", cell(resAdd(find(row.Results, t))))
		}
		w("\n")
	}
	for _, row := range r.Scale {
		for _, s := range row.Skipped {
			w("\n- %d mappings: %s", row.Mappings, s)
		}
		for _, x := range row.Results {
			if x.Note != "" {
				w("\n- %d mappings, %s: %s", row.Mappings, x.Tool, x.Note)
			}
		}
	}
	w("\n\n![ADD time against number of mappings](docs/bench-add.png)\n")

	if o := r.Others; o != nil {
		w("\n### One mapping on a table already holding %d rules of others\n\n", o.Others)
		w("The forwarder's HOST table was loaded with %d single-port rules of other containers; portmap's rules with %d other containers of one mapping each, added by portmap itself.\n\n", o.Others, o.Others)
		w("| command | ADD | DEL | runs |\n|---|---|---|---|\n")
		for _, x := range o.Results {
			w("| %s | %s | %s | %d |\n", x.Tool, cell(x.Add), cell(x.Del), len(x.Add.Wall))
		}
		for _, f := range o.Fill {
			if len(f.Wall) >= 20 {
				first := &Series{Wall: f.Wall[:10], MaxRSS: f.MaxRSS[:10]}
				last := &Series{Wall: f.Wall[len(f.Wall)-10:], MaxRSS: f.MaxRSS[len(f.MaxRSS)-10:]}
				w("\nFilling %s: its first 10 ADDs took %s ms, its last 10 %s ms (median).", f.Tool, cell(first), cell(last))
			}
		}
		w("\n")
	}

	if len(r.Conc) > 0 {
		w("\n## 3. Concurrency: 64 ADDs at once, then 64 DELs\n\n")
		w("64 processes started together (one mapping each, ports 21000, 21002, ...) against one forwarder; then the table (or the netfilter rules) read back.\n\n")
		w("| command | op | ok/calls | in place after (want) | total | per call p50 | p99 | max |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.Conc {
			s := summarize(c.Series)
			w("| %s | %s | %d/%d | %d (%d) | %s | %s | %s | %s |\n", c.Tool, c.Op, c.OK, c.Calls, c.InPlace, c.WantPlace, ms(c.Total), ms(s.Median), ms(s.P99), ms(s.Max))
		}
		for _, c := range r.Conc {
			if len(c.Errors) > 0 {
				w("\n- %s %s errors: %s", c.Tool, c.Op, joinErrs(c.Errors, 3))
			}
		}
		w("\n")
	}

	w("\n## 4. Memory: peak RSS of one ADD\n\n")
	w("Each command run under GNU `time -f %%M` (the peak RSS of the process and of its children, for portmap its iptables and nft commands), ADD then DEL, alternating. (The driver's own wait4 figure is useless here: Go starts children with vfork, and the kernel counts the parent's RSS in the child's.)\n\n")
	w("| command | mappings | ADD median | ADD highest | DEL median | runs |\n|---|---|---|---|---|---|\n")
	for _, row := range r.Mem {
		for _, x := range row.Results {
			a, d := summarize(x.Add), summarize(x.Del)
			if a.N == 0 {
				continue
			}
			w("| %s | %d | %.1f MiB | %.1f MiB | %.1f MiB | %d |\n", x.Tool, row.Mappings, float64(a.MaxRSSMedian)/1024, float64(a.MaxRSSPk)/1024, float64(d.MaxRSSMedian)/1024, a.N)
		}
	}

	if len(r.Steps) > 0 {
		w("\n## 5. Where the time goes\n\n")
		w("Parts of an ADD timed one by one in the bench driver (median of n runs, or `testing.Benchmark` ns/op for the pure-Go parts), with no other rule in the table and with %d rules of others.\n\n", r.Config.Others)
		w("| step | others | n | median | p90 | note |\n|---|---|---|---|---|---|\n")
		for _, s := range r.Steps {
			note := s.Note
			if s.Err != "" {
				note = "error: " + s.Err
			}
			med := ms(s.Median)
			if s.Median < 100*time.Microsecond && s.Median > 0 {
				med = fmt.Sprintf("%.1f µs", float64(s.Median)/1e3)
			}
			w("| %s | %d | %d | %s | %s | %s |\n", s.Name, s.Others, s.N, med, ms(s.P90), note)
		}
	}
	if len(r.Errors) > 0 {
		w("\n### Errors during the run\n\n")
		for _, e := range r.Errors {
			w("- %s\n", e)
		}
	}
	w("\nTime per case (s):")
	keys := make([]string, 0, len(r.CaseTime))
	for k := range r.CaseTime {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w(" %s %.0f;", k, r.CaseTime[k].Seconds())
	}
	w("\n")
	return b.String()
}

func other(p *Pair, x *Result) *Result {
	if p.A == x {
		return p.B
	}
	return p.A
}
