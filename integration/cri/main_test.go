package cri_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

func TestMain(m *testing.M) {
	os.Exit(runtimetest.Main(m, map[string]runtimetest.Sweeper{"ctd-": sweepContainerd}))
}

// sweepContainerd undoes what a killed run left of a containerd in dir:
// its containers (through runc, with its root in dir), then every process
// whose command line names dir (containerd, its shims, managed pastas),
// then its mounts.
func sweepContainerd(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), runtimetest.Timeout)
	defer cancel()
	runcRoot := filepath.Join(dir, "runc")
	if ents, err := os.ReadDir(runcRoot); err == nil {
		for _, ns := range ents {
			root := filepath.Join(runcRoot, ns.Name())
			out, err := exec.CommandContext(ctx, "runc", "--root", root, "list", "--quiet").Output()
			if err != nil {
				return fmt.Errorf("runc --root %s list: %w", root, err)
			}
			for _, id := range strings.Fields(string(out)) {
				if out, err := exec.CommandContext(ctx, "runc", "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
					return fmt.Errorf("runc delete %s: %w: %s", id, err, out)
				}
			}
		}
	}
	for _, pid := range runtimetest.ProcessesWith(dir + "/") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); len(runtimetest.ProcessesWith(dir+"/")) > 0; {
		if time.Now().After(deadline) {
			return fmt.Errorf("processes naming %s survive SIGKILL: %v", dir, runtimetest.ProcessesWith(dir+"/"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	unmountUnder(dir, func(string, ...any) {})
	return nil
}
