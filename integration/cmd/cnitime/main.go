// Command cnitime runs the CNI plugin next to it, in real/, as the
// runtime asked, and appends one line to timing.log beside it:
// CNI_COMMAND, CNI_CONTAINERID, the exit status and the microseconds the
// plugin took (from its start to its exit). Installed under the plugin's
// name in a test's plugin directory, it lets the runtime tests measure the
// time a container start spends in the plugin, whatever the runtime.
// Standard input, output and error pass through; the exit status is the
// plugin's.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

func main() {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnitime:", err)
		os.Exit(1)
	}
	dir := filepath.Dir(self)
	cmd := exec.Command(filepath.Join(dir, "real", filepath.Base(self)), os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	status := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status = ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "cnitime:", err)
		status = 1
	}
	if f, err := os.OpenFile(filepath.Join(dir, "timing.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		// One write per line: concurrent plugins append whole lines.
		_, _ = fmt.Fprintf(f, "%s %s %d %d\n", os.Getenv("CNI_COMMAND"), os.Getenv("CNI_CONTAINERID"), status, took.Microseconds())
		_ = f.Close()
	}
	os.Exit(status)
}
