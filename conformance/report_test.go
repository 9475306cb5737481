package conformance

import (
	"regexp"
	"strings"
	"testing"
)

func TestLineAndMarkdown(t *testing.T) {
	res := []Result{
		{Version: "1.0.0", ID: "del-twice", Section: "§2 DEL", Requirement: "DEL succeeds twice", Required: true, Status: Pass, Observed: "both\nDELs succeed"},
		{Version: "1.1.0", ID: "del-twice", Section: "§2 DEL", Requirement: "DEL succeeds twice", Required: true, Status: Fail, Observed: "second DEL: a|b"},
		{Version: "1.1.0", ID: "unknown-fields", Section: "§1", Requirement: "unknown fields", Status: NA, Observed: "why"},
	}
	line := regexp.MustCompile(`^(PASS|FAIL|N/A) +§\S+( \S+)*  [^:]+ \(\d+\.\d+\.\d+, (MUST|SHOULD)\): \S`)
	for _, r := range res {
		if l := Line(r); !line.MatchString(l) || strings.Contains(l, "\n") {
			t.Errorf("line %q does not have the form STATUS  SECTION  REQUIREMENT (VERSION, LEVEL): OBSERVED", l)
		}
	}
	if !Failed(res) {
		t.Error("Failed: false with a MUST check failed")
	}
	if Failed(res[:1]) || Failed([]Result{{Status: Fail}}) {
		t.Error("Failed: true without a MUST check failed")
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, res); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| check | section | level | 1.0.0 | 1.1.0 |",
		"| del-twice: DEL succeeds twice | §2 DEL | MUST | PASS | **FAIL** |",
		"| unknown-fields: unknown fields | §1 | SHOULD | | N/A |",
		"Failed: del-twice (1.1.0).",
		`| FAIL | 1.1.0 | del-twice | second DEL: a\|b |`,
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
