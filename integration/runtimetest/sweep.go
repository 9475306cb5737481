package runtimetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownerFile, in every directory OwnedDir makes, names the test process
// that made it: its PID and its start time (field 22 of /proc/PID/stat),
// so that a reused PID is not taken for the owner.
const ownerFile = ".owner"

// procStart returns the start time of process pid ("" when it is gone).
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// OwnedDir makes a directory under /tmp whose name starts with prefix,
// with the owner file that tells Sweep when its maker is gone.
func OwnedDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		return "", err
	}
	pid := os.Getpid()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", pid, procStart(pid))), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("owner file of %s: %w", dir, err)
	}
	return dir, nil
}

// orphaned reports whether dir has an owner file whose process is gone.
func orphaned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	return procStart(pid) != f[1]
}

// Sweeper undoes what a test run that was killed (a test binary's
// timeout runs no cleanup) left in one of its directories, before the
// directory is removed.
type Sweeper func(dir string) error

// Sweep runs the sweepers over the directories of their prefixes
// (OwnedDir's) whose owner is gone, then removes them, and says what it
// did on stderr.
func Sweep(sweepers map[string]Sweeper) {
	for prefix, fn := range sweepers {
		dirs, _ := filepath.Glob(filepath.Join("/tmp", prefix+"*"))
		for _, dir := range dirs {
			if !orphaned(dir) {
				continue
			}
			if err := fn(dir); err != nil {
				fmt.Fprintf(os.Stderr, "runtimetest: leftovers of a killed run in %s: %v\n", dir, err)
				continue
			}
			if err := os.RemoveAll(dir); err != nil {
				fmt.Fprintf(os.Stderr, "runtimetest: remove %s: %v\n", dir, err)
				continue
			}
			fmt.Fprintf(os.Stderr, "runtimetest: removed the leftovers of a killed run in %s\n", dir)
		}
	}
}

// nothing is the Sweeper of directories that hold only files.
func nothing(string) error { return nil }
