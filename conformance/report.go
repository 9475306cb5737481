package conformance

import (
	"fmt"
	"io"
	"strings"
)

// Line formats a result as one line:
//
//	PASS|FAIL|N/A  <spec section>  <requirement> (<version>, MUST|SHOULD): <what was observed>
func Line(r Result) string {
	return fmt.Sprintf("%-4s  %s  %s (%s, %s): %s", r.Status, r.Section, r.Requirement, r.Version, level(r), oneLine(r.Observed))
}

func level(r Result) string {
	if r.Required {
		return "MUST"
	}
	return "SHOULD"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// WriteText writes one line per result.
func WriteText(w io.Writer, results []Result) error {
	for _, r := range results {
		if _, err := fmt.Fprintln(w, Line(r)); err != nil {
			return err
		}
	}
	return nil
}

// WriteMarkdown writes a summary table (a row per check, a column per
// version) and then the observations of every check and version.
func WriteMarkdown(w io.Writer, results []Result) error {
	var versions, ids []string
	byKey := map[[2]string]Result{}
	for _, r := range results {
		if !contains(versions, r.Version) {
			versions = append(versions, r.Version)
		}
		if !contains(ids, r.ID) {
			ids = append(ids, r.ID)
		}
		byKey[[2]string{r.ID, r.Version}] = r
	}
	var b strings.Builder
	b.WriteString("| check | section | level |")
	for _, v := range versions {
		b.WriteString(" " + v + " |")
	}
	b.WriteString("\n|---|---|---|")
	for range versions {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, id := range ids {
		var first Result
		for _, v := range versions {
			if r, ok := byKey[[2]string{id, v}]; ok {
				first = r
				break
			}
		}
		fmt.Fprintf(&b, "| %s: %s | %s | %s |", id, mdEscape(first.Requirement), first.Section, level(first))
		for _, v := range versions {
			r, ok := byKey[[2]string{id, v}]
			switch {
			case !ok:
				b.WriteString(" |")
			case r.Status == Fail:
				b.WriteString(" **FAIL** |")
			default:
				b.WriteString(" " + string(r.Status) + " |")
			}
		}
		b.WriteString("\n")
	}
	var failed []string
	for _, id := range ids {
		var vs []string
		for _, v := range versions {
			if r, ok := byKey[[2]string{id, v}]; ok && r.Status == Fail {
				vs = append(vs, v)
			}
		}
		if len(vs) > 0 {
			failed = append(failed, fmt.Sprintf("%s (%s)", id, strings.Join(vs, ", ")))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "\nFailed: %s.\n", strings.Join(failed, "; "))
	} else {
		b.WriteString("\nNo check failed.\n")
	}
	b.WriteString("\n| result | version | check | observed |\n|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.Status, r.Version, r.ID, mdEscape(oneLine(r.Observed)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
