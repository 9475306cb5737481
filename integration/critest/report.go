// Package critest runs Kubernetes' CRI validation suite (critest, from
// sigs.k8s.io/cri-tools) against containerd 1.6 with two CNI chains,
// bridge + host-local + portmap and bridge + host-local + passt-portmap,
// offline: containerd, an image registry and critest run inside a network
// namespace standing for the node, and the images are built from
// busybox-static and a server of ours (see the test).
//
// This file reads critest's JUnit report (ginkgo's) and keeps the table
// of results in the README, between two markers: one row per selected
// spec, one column per chain, from the same run.
package critest

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Outcomes of a spec in the table.
const (
	Pass    = "pass"
	Fail    = "FAIL"
	Skipped = "skipped"
	NotRun  = "not run" // absent from the report
)

// Spec is one spec of a JUnit report.
type Spec struct {
	Name    string // the spec's full text without "[It] " and "[k8s.io] "
	Outcome string // Pass, Fail or Skipped
	Status  string // ginkgo's status ("passed", "failed", "timedout", ...)
	Message string // why it failed or was skipped ("" when it passed)
}

// SuiteNode reports whether s is a suite node of ginkgo's rather than a
// spec: "[BeforeSuite]", "[AfterSuite]", "[ReportAfterSuite] ...".
func (s Spec) SuiteNode() bool { return strings.HasPrefix(s.Name, "[") }

// junitSuites is the part of ginkgo's JUnit report the table needs.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Status  string        `xml:"status,attr"`
	Skipped *junitMessage `xml:"skipped"`
	Failure *junitMessage `xml:"failure"`
	Error   *junitMessage `xml:"error"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
}

// maxReport bounds the report read: critest's whole suite writes well
// under a megabyte; the captured output of a failing spec can be long.
const maxReport = 64 << 20

// ParseJUnit reads a JUnit report that ginkgo wrote (critest's
// -ginkgo.junit-report) and returns its specs in order. Suite nodes
// ([BeforeSuite], [AfterSuite], ...) are specs too, with their own names:
// a failing BeforeSuite must not pass unseen.
func ParseJUnit(r io.Reader) ([]Spec, error) {
	var doc junitSuites
	dec := xml.NewDecoder(io.LimitReader(r, maxReport))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("JUnit report: %w", err)
	}
	var out []Spec
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			if c.Name == "" {
				return nil, errors.New("JUnit report: a testcase without a name")
			}
			sp := Spec{Name: specName(c.Name), Status: c.Status}
			switch {
			case c.Failure != nil || c.Error != nil || (c.Status != "" && c.Status != "passed" && c.Status != "skipped" && c.Status != "pending"):
				sp.Outcome = Fail
				for _, m := range []*junitMessage{c.Failure, c.Error} {
					if m != nil && sp.Message == "" {
						sp.Message = m.Message
					}
				}
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				sp.Outcome = Skipped
				if c.Skipped != nil {
					sp.Message = c.Skipped.Message
				}
			default:
				sp.Outcome = Pass
			}
			out = append(out, sp)
		}
	}
	return out, nil
}

// specName drops ginkgo's node type and critest's describe prefix:
// "[It] [k8s.io] Networking runtime ..." -> "Networking runtime ...".
func specName(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "[It] ")
	return strings.TrimPrefix(s, "[k8s.io] ")
}

// Column is one chain's results: its title and the outcome of each spec
// by name.
type Column struct {
	Title    string
	Outcomes map[string]string
}

// Outcomes maps the specs of a report to their outcomes.
func Outcomes(specs []Spec) map[string]string {
	m := make(map[string]string, len(specs))
	for _, s := range specs {
		m[s.Name] = s.Outcome
	}
	return m
}

// Table renders the markdown table: a row per spec of specs, in that
// order, a column per chain; a spec a column does not have is NotRun.
func Table(specs []string, cols []Column) string {
	var b strings.Builder
	b.WriteString("| spec |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", cell(c.Title))
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, s := range specs {
		fmt.Fprintf(&b, "| %s |", cell(s))
		for _, c := range cols {
			o, ok := c.Outcomes[s]
			if !ok {
				o = NotRun
			}
			fmt.Fprintf(&b, " %s |", cell(o))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// cell makes s safe in a table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
}

// Rows reads the rows of the first markdown table in doc whose header
// starts with "| spec |" (as Table writes it): the header's cells, then
// each row's cells by spec. Specs in no table give an error.
func Rows(doc io.Reader) (header []string, rows map[string][]string, err error) {
	sc := bufio.NewScanner(io.LimitReader(doc, maxReport))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	in := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case !in && strings.HasPrefix(line, "| spec |"):
			in = true
			header = cells(line)
			rows = map[string][]string{}
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|"):
			c := cells(line)
			if len(c) != len(header) {
				return nil, nil, fmt.Errorf("table row %q: %d cells, the header has %d", line, len(c), len(header))
			}
			if _, dup := rows[c[0]]; dup {
				return nil, nil, fmt.Errorf("table: spec %q twice", c[0])
			}
			rows[c[0]] = c[1:]
		case in:
			return header, rows, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if !in {
		return nil, nil, errors.New("no table with a \"| spec |\" header")
	}
	return header, rows, nil
}

// cells splits a table line into its trimmed cells, honouring \|.
func cells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	var out []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case line[i] == '\r': // as Table writes it
			cur.WriteByte(' ')
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// Diff compares two tables that Rows read and describes each difference
// (a spec added or gone, a result changed, another header), sorted; none
// when they agree.
func Diff(oldHeader []string, old map[string][]string, newHeader []string, cur map[string][]string) []string {
	var out []string
	if strings.Join(oldHeader, "|") != strings.Join(newHeader, "|") {
		out = append(out, fmt.Sprintf("columns %q, now %q", oldHeader, newHeader))
	}
	for s, o := range old {
		n, ok := cur[s]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%q: no longer run", s))
		case strings.Join(o, "|") != strings.Join(n, "|"):
			out = append(out, fmt.Sprintf("%q: %s, now %s", s, strings.Join(o, ", "), strings.Join(n, ", ")))
		}
	}
	for s, n := range cur {
		if _, ok := old[s]; !ok {
			out = append(out, fmt.Sprintf("%q: new, %s", s, strings.Join(n, ", ")))
		}
	}
	sort.Strings(out)
	return out
}

// The markers around the generated part of the README.
const (
	BeginMarker = "<!-- critest results: written by scripts/critest.sh --report, do not edit -->"
	EndMarker   = "<!-- end of critest results -->"
)

// Generated returns the part of doc between BeginMarker and EndMarker.
func Generated(doc string) (string, error) {
	_, part, _, err := splitGenerated(doc)
	return part, err
}

// ReplaceGenerated returns doc with the part between the markers replaced
// by part.
func ReplaceGenerated(doc, part string) (string, error) {
	before, _, after, err := splitGenerated(doc)
	if err != nil {
		return "", err
	}
	return before + "\n" + strings.TrimSpace(part) + "\n" + after, nil
}

// splitGenerated splits doc after BeginMarker and before EndMarker; each
// must be there once, in that order.
func splitGenerated(doc string) (before, part, after string, err error) {
	if strings.Count(doc, BeginMarker) != 1 || strings.Count(doc, EndMarker) != 1 {
		return "", "", "", fmt.Errorf("want the markers %q and %q once each", BeginMarker, EndMarker)
	}
	b := strings.Index(doc, BeginMarker) + len(BeginMarker)
	e := strings.Index(doc, EndMarker)
	if e < b {
		return "", "", "", fmt.Errorf("%q comes before %q", EndMarker, BeginMarker)
	}
	return doc[:b], doc[b:e], doc[e:], nil
}
