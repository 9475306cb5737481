package critest

import (
	"reflect"
	"strings"
	"testing"
)

// report is a JUnit report shaped as ginkgo v2 writes it for critest.
const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="1" errors="1" failures="2" time="9.1">
  <testsuite name="CRI validation" package="/tmp" tests="6" disabled="1" skipped="1" errors="1" failures="2" time="9.1" timestamp="2026-12-06T05:09:42">
    <properties><property name="SuiteSucceeded" value="false"></property></properties>
    <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0.01"></testcase>
    <testcase name="[It] [k8s.io] Networking runtime should support networking runtime should support DNS config [Conformance]" classname="CRI validation" status="passed" time="1.2">
      <system-err>STEP: create a PodSandbox with DNS config</system-err>
    </testcase>
    <testcase name="[It] [k8s.io] Networking runtime should support networking runtime should support port mapping with host port and container port [Conformance]" classname="CRI validation" status="failed" time="60.1">
      <failure message="Timed out after 60.001s.&#xA;Expected success" type="failed">[FAILED] Timed out</failure>
    </testcase>
    <testcase name="[It] [k8s.io] Streaming runtime should support streaming interfaces runtime should support portforward [Conformance]" classname="CRI validation" status="timedout" time="900">
      <failure message="A spec timeout occurred" type="timedout"></failure>
    </testcase>
    <testcase name="[It] [k8s.io] Container runtime should support basic operations on container runtime should support creating container [Conformance]" classname="CRI validation" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] [k8s.io] PodSandbox runtime should support sysctls should support safe sysctls" classname="CRI validation" status="panicked" time="0.3">
      <error message="runtime error: index out of range" type="panicked"></error>
    </testcase>
    <testcase name="[It] [k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]" classname="CRI validation" status="pending" time="0">
      <skipped message="pending"></skipped>
    </testcase>
  </testsuite>
</testsuites>
`

func TestParseJUnit(t *testing.T) {
	specs, err := ParseJUnit(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{
		{Name: "[BeforeSuite]", Outcome: Pass, Status: "passed"},
		{Name: "Networking runtime should support networking runtime should support DNS config [Conformance]", Outcome: Pass, Status: "passed"},
		{Name: "Networking runtime should support networking runtime should support port mapping with host port and container port [Conformance]",
			Outcome: Fail, Status: "failed", Message: "Timed out after 60.001s.\nExpected success"},
		{Name: "Streaming runtime should support streaming interfaces runtime should support portforward [Conformance]",
			Outcome: Fail, Status: "timedout", Message: "A spec timeout occurred"},
		{Name: "Container runtime should support basic operations on container runtime should support creating container [Conformance]",
			Outcome: Skipped, Status: "skipped", Message: "skipped"},
		{Name: "PodSandbox runtime should support sysctls should support safe sysctls",
			Outcome: Fail, Status: "panicked", Message: "runtime error: index out of range"},
		{Name: "Image Manager public image with digest should be pulled and removed [Conformance]",
			Outcome: Skipped, Status: "pending", Message: "pending"},
	}
	if !reflect.DeepEqual(specs, want) {
		t.Errorf("got\n%+v\nwant\n%+v", specs, want)
	}
	if !specs[0].SuiteNode() || specs[1].SuiteNode() {
		t.Errorf("SuiteNode: %v %v, want true false", specs[0].SuiteNode(), specs[1].SuiteNode())
	}
}

func TestParseJUnitOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name, testcase, want string
	}{
		{"passed", `<testcase name="x" status="passed"></testcase>`, Pass},
		{"no status, no element", `<testcase name="x"></testcase>`, Pass},
		{"failure element without status", `<testcase name="x"><failure message="m"></failure></testcase>`, Fail},
		{"error element with status passed", `<testcase name="x" status="passed"><error message="m"></error></testcase>`, Fail},
		{"interrupted", `<testcase name="x" status="interrupted"></testcase>`, Fail},
		{"aborted", `<testcase name="x" status="aborted"></testcase>`, Fail},
		{"unknown status", `<testcase name="x" status="weird"></testcase>`, Fail},
		{"skipped element", `<testcase name="x"><skipped message="skipped - no"></skipped></testcase>`, Skipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := ParseJUnit(strings.NewReader("<testsuites><testsuite>" + tc.testcase + "</testsuite></testsuites>"))
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != 1 || specs[0].Outcome != tc.want {
				t.Fatalf("got %+v, want one spec %s", specs, tc.want)
			}
		})
	}
}

func TestParseJUnitErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not XML", "this is no report", "EOF"},
		{"truncated", `<testsuites><testsuite><testcase name="x" status="passed">`, "unexpected EOF"},
		{"another root", `<testsuite><testcase name="x"/></testsuite>`, "expected element type <testsuites>"},
		{"nameless testcase", `<testsuites><testsuite><testcase status="passed"/></testsuite></testsuites>`, "without a name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJUnit(strings.NewReader(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	cols := []Column{
		{Title: "a | b", Outcomes: map[string]string{"spec 1": Pass, "spec 2": Fail}},
		{Title: "c", Outcomes: map[string]string{"spec 1": Pass}},
	}
	got := Table([]string{"spec 1", "spec 2"}, cols)
	want := "| spec | a \\| b | c |\n|---|---|---|\n| spec 1 | pass | pass |\n| spec 2 | FAIL | not run |\n"
	if got != want {
		t.Fatalf("Table:\n%s\nwant\n%s", got, want)
	}
	header, rows, err := Rows(strings.NewReader("# title\n\nsome text | with a bar\n\n" + got + "\nafter\n| other | table |\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(header, []string{"spec", "a | b", "c"}) {
		t.Errorf("header %q", header)
	}
	if want := map[string][]string{"spec 1": {Pass, Pass}, "spec 2": {Fail, NotRun}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %q, want %q", rows, want)
	}
}

func TestRowsErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"no table", "# nothing\n", "no table"},
		{"short row", "| spec | a |\n|---|---|\n| x |\n", "1 cells, the header has 2"},
		{"twice", "| spec | a |\n|---|---|\n| x | pass |\n| x | FAIL |\n", `spec "x" twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Rows(strings.NewReader(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	h := []string{"spec", "a", "b"}
	old := map[string][]string{"s1": {Pass, Pass}, "s2": {Pass, Fail}, "s3": {Pass, Pass}}
	for _, tc := range []struct {
		name   string
		header []string
		cur    map[string][]string
		want   []string
	}{
		{"same", h, map[string][]string{"s1": {Pass, Pass}, "s2": {Pass, Fail}, "s3": {Pass, Pass}}, nil},
		{"changed", h, map[string][]string{"s1": {Pass, Pass}, "s2": {Pass, Pass}, "s3": {Pass, Pass}},
			[]string{`"s2": pass, FAIL, now pass, pass`}},
		{"gone and new", h, map[string][]string{"s1": {Pass, Pass}, "s2": {Pass, Fail}, "s4": {Fail, Pass}},
			[]string{`"s3": no longer run`, `"s4": new, FAIL, pass`}},
		{"columns", []string{"spec", "b", "a"}, map[string][]string{"s1": {Pass, Pass}, "s2": {Pass, Fail}, "s3": {Pass, Pass}},
			[]string{`columns ["spec" "a" "b"], now ["spec" "b" "a"]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Diff(h, old, tc.header, tc.cur); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Diff: %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseJUnit: no report makes the reader panic, and every spec it
// accepts has a name and one of the three outcomes.
func FuzzParseJUnit(f *testing.F) {
	f.Add([]byte(report))
	f.Add([]byte(`<testsuites><testsuite><testcase name="[It] x" status="failed"><failure message="m"/></testcase></testsuite></testsuites>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		specs, err := ParseJUnit(strings.NewReader(string(doc)))
		if err != nil {
			return
		}
		for _, s := range specs {
			if s.Outcome != Pass && s.Outcome != Fail && s.Outcome != Skipped {
				t.Fatalf("spec %q: outcome %q", s.Name, s.Outcome)
			}
			if s.Outcome == Pass && s.Message != "" {
				t.Fatalf("spec %q passed with a message %q", s.Name, s.Message)
			}
		}
	})
}

// FuzzRows: no document makes the table reader panic, and a table it
// reads, written again with Table, reads back the same.
func FuzzRows(f *testing.F) {
	f.Add([]byte("# x\n\n| spec | a | b |\n|---|---|---|\n| s \\| 1 | pass | FAIL |\n| s2 | not run | skipped |\n"))
	f.Add([]byte("| spec |\n| x |\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		header, rows, err := Rows(strings.NewReader(string(doc)))
		if err != nil {
			return
		}
		var specs []string
		cols := make([]Column, len(header)-1)
		for i := range cols {
			cols[i] = Column{Title: header[i+1], Outcomes: map[string]string{}}
		}
		for s, cs := range rows {
			specs = append(specs, s)
			for i, c := range cs {
				cols[i].Outcomes[s] = c
			}
		}
		h2, r2, err := Rows(strings.NewReader(Table(specs, cols)))
		if err != nil {
			t.Fatalf("Rows of Table of Rows: %v", err)
		}
		if d := Diff(header, rows, h2, r2); len(d) > 0 {
			t.Fatalf("read back differently: %q", d)
		}
	})
}

func TestGenerated(t *testing.T) {
	doc := "# README\n\ntext\n" + BeginMarker + "\nold\n" + EndMarker + "\nmore\n"
	part, err := Generated(doc)
	if err != nil || part != "\nold\n" {
		t.Fatalf("Generated: %q, %v", part, err)
	}
	got, err := ReplaceGenerated(doc, "\nnew table\n\n")
	if want := "# README\n\ntext\n" + BeginMarker + "\nnew table\n" + EndMarker + "\nmore\n"; err != nil || got != want {
		t.Fatalf("ReplaceGenerated: %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{
		"no markers",
		BeginMarker + " only",
		EndMarker + "\n" + BeginMarker,
		BeginMarker + BeginMarker + EndMarker,
	} {
		if _, err := Generated(bad); err == nil {
			t.Errorf("Generated(%q): no error", bad)
		}
		if _, err := ReplaceGenerated(bad, "x"); err == nil {
			t.Errorf("ReplaceGenerated(%q): no error", bad)
		}
	}
}
