package forwarder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkStop: what Stop costs besides waiting for the forwarder to
// exit (here it is gone already), with n more processes on the machine:
// it goes by the forwarder's identity record and what it forked, never
// through every process, so the cost does not grow with n.
func BenchmarkStop(b *testing.B) {
	for _, n := range []int{0, 300} {
		b.Run(fmt.Sprintf("processes=+%d", n), func(b *testing.B) {
			for range n {
				cmd := exec.Command("sleep", "600")
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			}
			dir := fakeDir(b)
			d, err := openDir(dir, true)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			gone := proc{PID: 4194305, Start: 1} // above pid_max: no such process
			for b.Loop() {
				b.StopTimer()
				if err := writeIdent(d, &identity{Proc: gone, UID: uint32(os.Geteuid())}); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, PIDFileName), []byte("4194305\n"), 0o600); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := Stop(context.Background(), dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
