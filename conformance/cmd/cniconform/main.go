// Command cniconform runs the CNI conformance suite (package conformance)
// against the plugins of a network configuration list:
//
//	cniconform --plugins DIR[:DIR...] --conflist FILE [--markdown]
//	           [--versions 0.4.0,1.1.0] [--hook CMD] [--unready-conflist FILE]
//
// It prints one line per check and CNI version,
//
//	PASS|FAIL|N/A  <spec section>  <requirement> (<version>, MUST|SHOULD): <observed>
//
// or, with --markdown, a table. It exits 1 when a MUST check failed, 2
// when the suite could not run. Run it as root: it makes network
// namespaces.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/passt-portmap/passt-portmap/conformance"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cniconform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	plugins := fs.String("plugins", "", "CNI_PATH: directories of the plugins, separated by ':'")
	conflist := fs.String("conflist", "", "the network configuration list to test")
	unready := fs.String("unready-conflist", "", "a configuration list under which the plugins are not ready (for STATUS)")
	versions := fs.String("versions", "", "comma-separated cniVersions to test (default: those the configuration names)")
	hook := fs.String("hook", "", "shell command run with CONFORM_ACTION=setup|teardown|remove for each container")
	markdown := fs.Bool("markdown", false, "print a Markdown table")
	parallel := fs.Int("parallel", 8, "containers of the parallel check")
	timeout := fs.Duration("timeout", 30*time.Second, "bound of each plugin call and hook")
	verbose := fs.Bool("v", false, "print each result to stderr as it comes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *plugins == "" || *conflist == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: cniconform --plugins DIR --conflist FILE [--markdown] [--versions V,...] [--hook CMD] [--unready-conflist FILE]")
		return 2
	}
	s := &conformance.Suite{Hook: *hook, Parallel: *parallel, Timeout: *timeout}
	for _, d := range filepath.SplitList(*plugins) {
		abs, err := filepath.Abs(d)
		if err != nil {
			fmt.Fprintf(stderr, "cniconform: plugin directory %s: %v\n", d, err)
			return 2
		}
		s.PluginDirs = append(s.PluginDirs, abs)
	}
	var err error
	if s.Conflist, err = os.ReadFile(*conflist); err != nil {
		fmt.Fprintf(stderr, "cniconform: %v\n", err)
		return 2
	}
	if *unready != "" {
		if s.UnreadyConflist, err = os.ReadFile(*unready); err != nil {
			fmt.Fprintf(stderr, "cniconform: %v\n", err)
			return 2
		}
	}
	if *versions != "" {
		s.Versions = strings.Split(*versions, ",")
	}
	if *verbose {
		s.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := s.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cniconform: %v\n", err)
		return 2
	}
	if *markdown {
		err = conformance.WriteMarkdown(stdout, results)
	} else {
		err = conformance.WriteText(stdout, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cniconform: %v\n", err)
		return 2
	}
	if conformance.Failed(results) {
		return 1
	}
	return 0
}
