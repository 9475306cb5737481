package procnet

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadPIDFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pid")
	for _, tc := range []struct {
		content *string
		pid     int
		is      error
	}{
		{nil, 0, fs.ErrNotExist},
		{new(""), 0, ErrNoPID},
		{new("garbage"), 0, ErrMalformedPID},
		{new("12 "), 0, ErrMalformedPID},
		{new("42\n"), 42, nil},
		{new("7"), 7, nil},
	} {
		os.Remove(p)
		if tc.content != nil {
			os.WriteFile(p, []byte(*tc.content), 0o600)
		}
		pid, err := ReadPIDFile(p)
		if pid != tc.pid || !errors.Is(err, tc.is) || (err != nil && tc.content != nil && !strings.Contains(err.Error(), p)) {
			t.Errorf("%v: %d, %v; want %d, %v naming the file", tc.content, pid, err, tc.pid, tc.is)
		}
	}
}

func TestProcesses(t *testing.T) {
	pids, err := Processes()
	if err != nil || !slices.Contains(pids, os.Getpid()) || slices.Contains(pids, 0) {
		t.Fatalf("Processes: %d pids, %v; want our own %d among them", len(pids), err, os.Getpid())
	}
}
