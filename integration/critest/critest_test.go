package critest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/containerdtest"
	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

var update = flag.Bool("update", false, "write the README's critest results from this run instead of comparing the run with them")

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runtimetest.Main(m, map[string]runtimetest.Sweeper{containerdtest.DirPrefix: containerdtest.Sweep}))
}

// focus selects the network's specs with ginkgo's -focus (any of them):
// every Networking and PodSandbox spec, every "should support network",
// the port-forward specs, and the HostNetwork specs of Security Context
// (a pod's own namespace must not show the node's listening ports).
var focus = []string{
	`\[k8s\.io\] Networking `,
	`\[k8s\.io\] PodSandbox `,
	`should support network\b`,
	`should support portforward`,
	`should support HostNetwork`,
}

// selection is what focus selects in cri-tools v1.34.0, in the table's
// order. The test fails when critest runs another set of specs.
var selection = []string{
	"Networking runtime should support networking runtime should support DNS config [Conformance]",
	"Networking runtime should support networking runtime should support set hostname [Conformance]",
	"Networking runtime should support networking runtime should support port mapping with only container port [Conformance]",
	"Networking runtime should support networking runtime should support port mapping with host port and container port [Conformance]",
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support running PodSandbox [Conformance]",
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support stopping PodSandbox [Conformance]",
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support removing PodSandbox [Conformance]",
	"PodSandbox runtime should support sysctls should support safe sysctls",
	"PodSandbox runtime should support sysctls should support unsafe sysctls",
	"Multiple Containers [Conformance] when running multiple containers in a pod should support network",
	"Streaming runtime should support streaming interfaces runtime should support portforward [Conformance]",
	"Streaming runtime should support streaming interfaces runtime should support portforward in host network",
	"Security Context NamespaceOption runtime should support HostNetwork is true",
	"Security Context NamespaceOption runtime should support HostNetwork is false",
}

// TestCritest runs the selected specs of Kubernetes' CRI validation suite
// against containerd with bridge + host-local + portmap, then with bridge
// + host-local + passt-portmap (the plugin built from this repository),
// each on a node namespace of its own. It fails unless every selected
// spec passes with passt-portmap and nothing of the plugin is left after
// the suite, and when the table of both runs differs from the README's
// (-update writes it instead).
func TestCritest(t *testing.T) {
	tools(t)
	var cols []Column
	for _, ch := range []chain{portmap, passtPortmap} {
		var specs []Spec
		t.Run(strings.ReplaceAll(ch.title, " ", ""), func(t *testing.T) {
			n := startNode(t, ch)
			start := time.Now()
			specs = n.critest(t)
			t.Logf("critest with %s: %d specs in the report, run in %v", ch.title, len(specs), time.Since(start).Round(time.Second))
			n.StopPods(t)
			if ch.mustPass {
				runtimetest.NothingLeft(t, n.dataDir)
			}
			checkRun(t, ch, specs)
		})
		if specs == nil {
			t.Fatalf("no critest report with %s", ch.title)
		}
		cols = append(cols, Column{Title: ch.title, Outcomes: Outcomes(specs)})
	}
	checkDoc(t, Table(selection, cols))
}

// checkRun fails the test unless critest ran exactly the selection and
// its suite nodes passed, and, for a chain that must pass, unless every
// spec passed; a reference chain's failures are logged (the table
// records them).
func checkRun(t *testing.T, ch chain, specs []Spec) {
	t.Helper()
	ran := map[string]bool{}
	for _, s := range specs {
		switch {
		case s.SuiteNode():
			// [BeforeSuite] and the like: not in the table, but a
			// failure there fails every spec.
			if s.Outcome == Fail {
				t.Errorf("%s: %s failed: %s", ch.title, s.Name, firstLine(s.Message))
			}
			continue
		case s.Outcome == Skipped: // not selected (or skipped: then missing below)
			continue
		case !slices.Contains(selection, s.Name):
			t.Errorf("critest ran %q, which is not in the selection: update focus or selection", s.Name)
		case s.Outcome != Pass && ch.mustPass:
			t.Errorf("%s: %q: %s (%s): %s", ch.title, s.Name, s.Outcome, s.Status, firstLine(s.Message))
		case s.Outcome != Pass:
			t.Logf("%s (the reference): %q: %s (%s): %s", ch.title, s.Name, s.Outcome, s.Status, firstLine(s.Message))
		}
		ran[s.Name] = true
	}
	for _, s := range selection {
		if !ran[s] {
			t.Errorf("%s: critest did not run the selected spec %q", ch.title, s)
		}
	}
}

// firstLine is the first line of a failure message, shortened.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// critest runs critest's selected specs, serially, inside the node's
// namespace against its containerd, and returns the specs of its JUnit
// report. critest's own exit status only says whether some spec failed;
// the report says which.
func (n *node) critest(t *testing.T) []Spec {
	t.Helper()
	critest, _ := tools(t)
	report := filepath.Join(n.Dir, "junit.xml")
	tmp := filepath.Join(n.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"-runtime-endpoint", "unix://" + n.Sock, "-image-endpoint", "unix://" + n.Sock,
		"-ginkgo.junit-report", report, "-ginkgo.no-color", "-ginkgo.timeout", "15m",
	}
	for _, f := range focus {
		args = append(args, "-ginkgo.focus", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := n.CommandContext(ctx, critest, args...)
	cmd.Dir = tmp
	// critest's temporary files (pod log directories) go under the work
	// directory, removed with it.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	logPath := filepath.Join(n.Dir, "critest.log")
	_ = os.WriteFile(logPath, out.Bytes(), 0o644)
	f, ferr := os.Open(report)
	if ferr != nil {
		t.Fatalf("critest wrote no report (%v; exit: %v)\n%s\ncontainerd:\n%s", ferr, err, tail(out.String(), 6000), n.Log())
	}
	defer f.Close()
	specs, perr := ParseJUnit(f)
	if perr != nil {
		t.Fatalf("critest's report: %v (exit: %v)\n%s", perr, err, tail(out.String(), 6000))
	}
	if err != nil {
		// ginkgo's summary of the failures, where it has one.
		sum := out.String()
		if i := strings.LastIndex(sum, "Summarizing "); i >= 0 {
			sum = sum[i:]
		}
		t.Logf("critest: %v\n%s", err, tail(sum, 6000))
	}
	return specs
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// readmePath is the README, from this file's location.
func readmePath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "README.md")
}

// checkDoc compares the run's table with the README's, or writes the
// README's generated part with -update.
func checkDoc(t *testing.T, table string) {
	t.Helper()
	b, err := os.ReadFile(readmePath())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		doc, err := ReplaceGenerated(string(b), generated(t, table))
		if err != nil {
			t.Fatalf("%s: %v", readmePath(), err)
		}
		if err := os.WriteFile(readmePath(), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote the critest results in %s", readmePath())
		return
	}
	part, err := Generated(string(b))
	if err != nil {
		t.Fatalf("%s: %v", readmePath(), err)
	}
	oh, old, err := Rows(strings.NewReader(part))
	if err != nil {
		t.Fatalf("%s: %v", readmePath(), err)
	}
	nh, cur, err := Rows(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(oh, old, nh, cur); len(d) > 0 {
		t.Errorf("results differ from the README's (update them with scripts/critest.sh --report):\n%s\nthis run:\n%s",
			strings.Join(d, "\n"), table)
	}
}

// generated is the README's generated part: what ran, and the table.
func generated(t *testing.T, table string) string {
	t.Helper()
	var fq []string
	for _, f := range focus {
		fq = append(fq, "`"+f+"`")
	}
	return fmt.Sprintf("Against: critest %s (cri-tools); Debian's containerd %s, runc %s, containernetworking-plugins %s, "+
		"docker-registry %s; %s.\nSelected with `-ginkgo.focus` (any of): %s.\n\n%s",
		critoolsVersion(t), dpkgVersion("containerd"), dpkgVersion("runc"), dpkgVersion("containernetworking-plugins"),
		dpkgVersion("docker-registry"), pastatest.Version(t), strings.Join(fq, ", "), table)
}

func critoolsVersion(t *testing.T) string {
	critest, _ := tools(t)
	out, _ := exec.Command(critest, "-version").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "critest version: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(unknown version)"
}

func dpkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "not installed"
	}
	return string(out)
}
