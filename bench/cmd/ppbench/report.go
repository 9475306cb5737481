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
	Started time.Time     `json:"started"`
	Config  Config        `json:"config"`
	Pairs   []Pair        `json:"pairs"`
	Scale   []ScaleRow    `json:"scale"`
	Others  *OthersRow    `json:"others,omitempty"`
	Conc    []*ConcResult `json:"concurrency"`
	// ConcSingle are single ADDs of passt-portmap and pesto run just
	// before the bursts.
	ConcSingle *Pair                    `json:"concurrency_single,omitempty"`
	Mem        []ScaleRow               `json:"memory"` // peak RSS under GNU time
	Pods       []Pair                   `json:"pods"`   // a pod's ADD and DEL through libcni, in pairs
	Node       *NodeRow                 `json:"node,omitempty"`
	Status     *StatusRow               `json:"status,omitempty"`
	Steps      []Step                   `json:"steps"`
	Errors     []string                 `json:"errors,omitempty"`
	CaseTime   map[string]time.Duration `json:"case_time_ns"`
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
// from the largest case measured so far. Its cost grows faster than the
// mappings (each iptables command handles a chain that grows with them):
// the prediction is quadratic, which the measurements so far exceed
// (a 1,000-mapping ADD predicted at 27 s linearly took 200 s).
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
	k := float64(n) / float64(bestN)
	return time.Duration(float64(best) * k * k), bestN
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

// chartStyles are the line styles of chartTools, in the same order.
var chartStyles = []string{
	`lw 3 pt 7 lc rgb "#1b7837" title "passt-portmap (verified)"`,
	`lw 2 pt 6 dt 2 lc rgb "#5aae61" title "passt-portmap, unverified"`,
	`lw 2 pt 5 lc rgb "#2166ac" title "pesto, one call"`,
	`lw 2 pt 4 dt 3 lc rgb "#67a9cf" title "pesto, one call per mapping (Podman's way)"`,
	`lw 2 pt 9 lc rgb "#b2182b" title "portmap, iptables backend"`,
	`lw 2 pt 11 lc rgb "#ef8a62" title "portmap, nftables backend"`,
}

// chartRows are the rows of the chart: the scaling cases, or, in a run
// without them, the one-mapping ADDs of the pairs (so that a partial run
// still draws what it measured).
func (r *Report) chartRows() []ScaleRow {
	if len(r.Scale) > 0 {
		return r.Scale
	}
	row := ScaleRow{Mappings: 1, Kind: "one"}
	for _, p := range r.Pairs {
		for _, x := range []*Result{p.A, p.B} {
			if find(row.Results, x.Tool) == nil {
				row.Results = append(row.Results, x)
			}
		}
	}
	if len(row.Results) == 0 {
		return nil
	}
	return []ScaleRow{row}
}

func (r *Report) writeChart(dir string) error {
	var b strings.Builder
	b.WriteString("# mappings, then per tool: median p10 p90 of ADD in ms; ? = not measured\n# tools: " + strings.Join(chartTools, " | ") + "\n")
	rows := r.chartRows()
	measured := make([]bool, len(chartTools))
	for _, row := range rows {
		fmt.Fprintf(&b, "%d", row.Mappings)
		for i, t := range chartTools {
			x := find(row.Results, t)
			if x == nil || summarize(x.Add).N == 0 {
				b.WriteString(" ? ? ?")
				continue
			}
			measured[i] = true
			s := summarize(x.Add)
			f := func(d time.Duration) float64 { return float64(d) / 1e6 }
			fmt.Fprintf(&b, " %.4f %.4f %.4f", f(s.Median), f(s.P10), f(s.P90))
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "add.dat"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "add.gp"), []byte(chartScript(measured)), 0o644)
}

// chartScript is the gnuplot script of the chart, plotting only the
// tools that have data: gnuplot refuses a series whose points are all
// undefined ("all points y value undefined"), which a partial run has.
// With no data at all it draws an empty frame that says so.
func chartScript(measured []bool) string {
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
`
	var series []string
	for i, ok := range measured {
		if !ok {
			continue
		}
		src := `""`
		if len(series) == 0 {
			src = `"add.dat"`
		}
		c := 2 + 3*i
		series = append(series, fmt.Sprintf("%s using 1:%d:%d:%d with yerrorlines %s", src, c, c+1, c+2, chartStyles[i]))
	}
	if len(series) == 0 {
		return gp + `set yrange [1:1000]
set label "no ADD was measured in this run" at graph 0.5, graph 0.5 center
plot 1e9 notitle
`
	}
	return gp + "plot " + strings.Join(series, ", \\\n     ") + "\n"
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
	NA           bool // the case could not run: the command refused
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

// Target verdicts: met, not met, or (nil) not measured; NA says why a
// case could not run at all (a command that refused).
func (r *Report) targets() []Target {
	var ts []Target
	paired := func(what string, a, b *Series, limit float64) Target {
		t := Target{What: what, Figure: "not measured"}
		if a == nil || b == nil {
			return t
		}
		x, y := med(a), med(b)
		q, n := pairedRatio(a.Wall, b.Wall)
		if x > 0 && y > 0 && n > 0 {
			t.Figure = fmt.Sprintf("median of %d paired runs: **%.2fx** (ratio of medians %s / %s ms = %.2fx; of p10s %s)", n, q, ms(x), ms(y), float64(x)/float64(y), ratio(summarize(a).P10, summarize(b).P10))
			t.Met = verdict(q <= limit)
		}
		return t
	}
	pr := func(a, b string, limit float64, what string, del bool) {
		p := r.pair(a, b)
		if p == nil {
			ts = append(ts, Target{What: what, Figure: "not measured"})
			return
		}
		if del {
			ts = append(ts, paired(what, p.A.Del, p.B.Del, limit))
		} else {
			ts = append(ts, paired(what, p.A.Add, p.B.Add, limit))
		}
	}
	pr("passt-portmap", "pesto", 1.0, "one-mapping ADD, verified, ≤ 1.0x pesto's add", false)
	pr("passt-portmap", "pesto", 1.0, "one-mapping DEL, verified, ≤ 1.0x pesto's delete", true)
	pr("passt-portmap, unverified", "pesto", 1.0, "one-mapping ADD, unverified, ≤ 1.0x pesto's add", false)
	pr("passt-portmap", "portmap (iptables)", 0.2, "one-mapping ADD (verified) ≤ 0.2x portmap, iptables backend", false)
	pr("passt-portmap", "portmap (nftables)", 0.5, "one-mapping ADD (verified) ≤ 0.5x portmap, nftables backend", false)
	ts = append(ts, r.concTargets()...)
	ts = append(ts, r.podTargets()...)
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
	ts = append(ts, r.statusTarget())
	return ts
}

// concTargets are the targets of the bursts: every call succeeds and the
// table is exact; the worst p99 of an ADD burst is at most 20x a single
// ADD of the same minutes; a burst takes no longer than pesto's.
func (r *Report) concTargets() []Target {
	t := Target{What: "64 concurrent ADDs on one forwarder: all succeed, tables exact; p99 ≤ 20x the single ADD", Figure: "not measured"}
	var single time.Duration
	from := ""
	if p := r.ConcSingle; p != nil && summarize(p.A.Add).N > 0 {
		single, from = med(p.A.Add), "single ADDs just before the bursts"
	} else if p := r.pair("passt-portmap", "pesto"); p != nil {
		single, from = med(p.A.Add), "the one-mapping case"
	}
	okAll, n, worst := true, 0, time.Duration(0)
	var ppTotals, pestoTotals []time.Duration
	for _, c := range r.Conc {
		switch c.Tool {
		case "passt-portmap":
			n++
			if c.OK != c.Calls || c.InPlace != c.WantPlace {
				okAll = false
			}
			if c.Op == "ADD" {
				worst = max(worst, summarize(c.Series).P99)
				ppTotals = append(ppTotals, c.Total)
			}
		case "pesto":
			if c.Op == "ADD" && c.OK == c.Calls {
				pestoTotals = append(pestoTotals, c.Total)
			}
		}
	}
	if n > 0 && single > 0 {
		q := float64(worst) / float64(single)
		t.Figure = fmt.Sprintf("%d bursts, all calls ok and tables right: %v; worst p99 %s ms = **%.1fx** the single ADD (%s ms, %s)", n/2, okAll, ms(worst), q, ms(single), from)
		t.Met = verdict(okAll && q <= 20)
	}
	u := Target{What: "64 concurrent ADDs: the burst's total ≤ 64 pesto adds run the same way", Figure: "not measured"}
	if len(ppTotals) > 0 && len(pestoTotals) > 0 {
		a, b := medianOf(ppTotals), medianOf(pestoTotals)
		q := float64(a) / float64(b)
		u.Figure = fmt.Sprintf("median of %d bursts each: %s ms against pesto's %s ms: **%.2fx**", min(len(ppTotals), len(pestoTotals)), ms(a), ms(b), q)
		u.Met = verdict(q <= 1.0 && okAll)
	}
	return []Target{t, u}
}

// medianOf is the median of unsorted d.
func medianOf(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return median(s)
}

// sumMedians is the median ADD plus the median DEL of x: one whole pod's
// network set-up and tear-down.
func sumMedians(x *Result) time.Duration {
	if x == nil {
		return 0
	}
	return med(x.Add) + med(x.Del)
}

// pairedSum is the median over runs of (A's ADD + DEL) / (B's ADD + DEL),
// where both have every run; the ratio of the sums of medians otherwise.
func pairedSum(a, b *Result) (float64, int) {
	if n := len(a.Add.Wall); n > 0 && n == len(a.Del.Wall) && n == len(b.Add.Wall) && n == len(b.Del.Wall) {
		x := make([]time.Duration, n)
		y := make([]time.Duration, n)
		for i := range x {
			x[i], y[i] = a.Add.Wall[i]+a.Del.Wall[i], b.Add.Wall[i]+b.Del.Wall[i]
		}
		return pairedRatio(x, y)
	}
	if sa, sb := sumMedians(a), sumMedians(b); sa > 0 && sb > 0 {
		return float64(sa) / float64(sb), 0
	}
	return 0, 0
}

// podTargets: a managed pod and a chained one against bridge +
// host-local + portmap, and one more pod at node scale.
func (r *Report) podTargets() []Target {
	var ts []Target
	for _, c := range []struct {
		tool, what string
		limit      float64
	}{
		{"passt-portmap, managed", "managed pod ADD+DEL ≤ 0.3x bridge + host-local + portmap (libcni, in a namespace standing for the node)", 0.3},
		{"bridge + host-local + passt-portmap (chained)", "bridge + host-local + passt-portmap (chained) ADD+DEL ≤ 1.0x bridge + host-local + portmap", 1.0},
	} {
		t := Target{What: c.what, Figure: "not measured"}
		for _, p := range r.Pods {
			if p.A.Tool != c.tool {
				continue
			}
			if summarize(p.A.Add).N == 0 {
				t.Figure, t.NA = "not available: "+strings.TrimPrefix(p.A.Note, "left out: "), true
				break
			}
			q, n := pairedSum(p.A, p.B)
			how := fmt.Sprintf("median of %d paired runs", n)
			if n == 0 {
				how = "ratio of the sums of medians"
			}
			t.Figure = fmt.Sprintf("%s: **%.2fx** (%s + %s ms against %s + %s ms)", how, q, ms(med(p.A.Add)), ms(med(p.A.Del)), ms(med(p.B.Add)), ms(med(p.B.Del)))
			t.Met = verdict(q <= c.limit)
		}
		ts = append(ts, t)
	}
	t := Target{What: "one more managed pod's ADD+DEL with 110 managed pods on the node ≤ 1.1x with none", Figure: "not measured"}
	if nr := r.Node; nr != nil {
		t.What = fmt.Sprintf("one more managed pod's ADD+DEL with %d managed pods on the node ≤ 1.1x with none", nr.Pods)
		at := sumMedians(nr.At)
		var none []time.Duration
		for _, x := range []*Result{nr.Before, nr.After} {
			if s := sumMedians(x); s > 0 {
				none = append(none, s)
			}
		}
		if at > 0 && len(none) > 0 {
			var sum time.Duration
			for _, d := range none {
				sum += d
			}
			base := sum / time.Duration(len(none))
			q := float64(at) / float64(base)
			t.Figure = fmt.Sprintf("median ADD + median DEL: %s ms with %d pods against %s ms with none (mean of before and after: %s): **%.2fx**", ms(at), nr.Pods, ms(base), joinDur(none), q)
			t.Met = verdict(q <= 1.1)
		}
	}
	return append(ts, t)
}

func joinDur(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = ms(d)
	}
	return strings.Join(parts, " and ") + " ms"
}

// statusTarget: STATUS writes nothing, and its check of dataDir costs a
// statfs instead of a synced 128 KiB file.
func (r *Report) statusTarget() Target {
	t := Target{What: "STATUS cheap enough for every readiness check: no disk write; dataDir checked by statfs, not by a synced 128 KiB file", Figure: "not measured"}
	s := r.Status
	if s == nil || len(s.Runs) == 0 {
		return t
	}
	var blocks int64
	var parts []string
	for _, x := range s.Runs {
		for _, b := range s.Oublock[x.Tool] {
			blocks = max(blocks, b)
		}
		if x.Op == "STATUS" {
			parts = append(parts, fmt.Sprintf("%s %s ms", x.Tool, ms(med(x))))
		}
	}
	for _, st := range s.Steps {
		parts = append(parts, fmt.Sprintf("%s: %s", st.Name, msOrMicro(st.Median)))
	}
	t.Figure = fmt.Sprintf("most written by one call: **%d blocks** of 512 bytes (wait4's ru_oublock); %s", blocks, strings.Join(parts, "; "))
	t.Met = verdict(blocks == 0)
	return t
}

// msOrMicro formats d in ms, or in µs below 0.1 ms.
func msOrMicro(d time.Duration) string {
	if d > 0 && d < 100*time.Microsecond {
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
	return ms(d) + " ms"
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
		if t.NA {
			v = "not available"
		}
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
		if p := r.ConcSingle; p != nil {
			w("Just before the bursts, single ADDs alternated (the reference of the p99 target): %s %s ms, %s %s ms (median of %d).\n\n", p.A.Tool, cell(p.A.Add), p.B.Tool, cell(p.B.Add), len(p.A.Add.Wall))
		}
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

	r.podsMarkdown(w)
	if len(r.Steps) > 0 {
		w("\n## 8. Where the time goes\n\n")
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

// podsMarkdown writes the sections of the pod, node-scale and STATUS
// cases.
func (r *Report) podsMarkdown(w func(string, ...any)) {
	if len(r.Pods) > 0 {
		w("\n## 5. A pod's network: managed passt-portmap and bridge + host-local + portmap\n\n")
		w("Each command is a whole CNI network configuration list run through libcni, as a runtime runs it, on a fresh network namespace per run (made and removed outside the clock), in the bench's namespace standing for the node; one mapping (`hostPort` 22000 to 80, TCP, every address). Pairs alternate run by run. A is the pod's ADD + DEL against B's.\n\n")
		w("| A | B | runs | A ADD | A DEL | B ADD | B DEL | (A ADD+DEL) / (B ADD+DEL) |\n|---|---|---|---|---|---|---|---|\n")
		for _, p := range r.Pods {
			q, n := pairedSum(p.A, p.B)
			ratioCell := "–"
			if q > 0 {
				ratioCell = fmt.Sprintf("%.2fx", q)
				if n == 0 {
					ratioCell += " (of medians)"
				}
			}
			w("| %s | %s | %d/%d | %s | %s | %s | %s | %s |\n", p.A.Tool, p.B.Tool, len(p.A.Add.Wall), len(p.B.Add.Wall), cell(p.A.Add), cell(p.A.Del), cell(p.B.Add), cell(p.B.Del), ratioCell)
		}
		for _, p := range r.Pods {
			for _, x := range []*Result{p.A, p.B} {
				if x.Note != "" || x.Add.Failed+x.Del.Failed > 0 {
					w("\n- %s: %s failures %d/%d %s %s", x.Tool, x.Note, x.Add.Failed, x.Del.Failed, x.Add.LastErr, x.Del.LastErr)
				}
			}
		}
		w("\n")
	}
	if nr := r.Node; nr != nil {
		w("\n## 6. Node scale: one more managed pod beside %d others\n\n", nr.Pods)
		w("One more pod's managed ADD and DEL (libcni, one mapping, a fresh namespace each run) on a node without other managed pods, then with %d managed pods running (each its own pasta and namespace, as Kubernetes' default maximum of pods per node), then without them again.\n\n", nr.Pods)
		w("| managed pods on the node | runs | ADD | DEL | ADD + DEL (medians) |\n|---|---|---|---|---|\n")
		for _, x := range []struct {
			n    int
			r    *Result
			when string
		}{{0, nr.Before, "before"}, {nr.Pods, nr.At, ""}, {0, nr.After, "after"}} {
			if x.r == nil {
				continue
			}
			label := fmt.Sprint(x.n)
			if x.when != "" {
				label += " (" + x.when + ")"
			}
			w("| %s | %d | %s | %s | %s |\n", label, len(x.r.Add.Wall), cell(x.r.Add), cell(x.r.Del), ms(sumMedians(x.r)))
		}
		for _, f := range []*Series{nr.Fill, nr.Drain} {
			if f != nil && len(f.Wall) >= 20 {
				first := &Series{Wall: f.Wall[:10], MaxRSS: f.MaxRSS[:10]}
				last := &Series{Wall: f.Wall[len(f.Wall)-10:], MaxRSS: f.MaxRSS[len(f.MaxRSS)-10:]}
				w("\nThe %d pods' own %ss: the first 10 took %s ms, the last 10 %s ms (median).", len(f.Wall), f.Op, cell(first), cell(last))
			}
		}
		w("\n")
	}
	if s := r.Status; s != nil {
		w("\n## 7. STATUS: the cost of one readiness check\n\n")
		w("CNI STATUS run as a process, alternating with the plugin's VERSION (its bare start-up); file system output from wait4's `ru_oublock` (512-byte blocks). Then, in process, the two ways of telling that dataDir can take a record.\n\n")
		w("| command | runs | wall | blocks written (median, highest) |\n|---|---|---|---|\n")
		for _, x := range s.Runs {
			ob := append([]int64(nil), s.Oublock[x.Tool]...)
			sort.Slice(ob, func(i, j int) bool { return ob[i] < ob[j] })
			obc := "–"
			if len(ob) > 0 {
				obc = fmt.Sprintf("%d, %d", ob[len(ob)/2], ob[len(ob)-1])
			}
			w("| %s | %d | %s | %s |\n", x.Tool, len(x.Wall), cell(x), obc)
		}
		w("\n| check of dataDir | n | median | p90 |\n|---|---|---|---|\n")
		for _, st := range s.Steps {
			w("| %s | %d | %s | %s |\n", st.Name, st.N, msOrMicro(st.Median), msOrMicro(st.P90))
		}
	}
}
