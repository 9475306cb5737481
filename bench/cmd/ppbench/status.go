package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// StatusRow is the STATUS case: what one readiness check costs, as a
// process, beside the plugin's bare start-up (VERSION), and the two ways
// of telling that dataDir can take a record, in process.
type StatusRow struct {
	Runs []*Series `json:"runs"` // per command
	// Oublock is the file system output operations (wait4's ru_oublock,
	// in 512-byte blocks) of each command's runs, by tool.
	Oublock map[string][]int64 `json:"oublock"`
	Steps   []Step             `json:"steps"`
}

// caseStatus times CNI STATUS of passt-portmap (attached to the bench's
// forwarder, and managed) against its VERSION, alternating run by run,
// and counts what each writes to the file system; then, in process, the
// check STATUS made before (write and fsync a 128 KiB file in dataDir)
// against a statfs of dataDir.
func (b *Bench) caseStatus(ctx context.Context) error {
	if b.cfg.Plugin == "" {
		return fmt.Errorf("status case: no passt-portmap binary")
	}
	dataDir := filepath.Join(b.cfg.Work, "status")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("status case: %w", err)
	}
	conf := func(extra map[string]any) []byte {
		m := map[string]any{"cniVersion": "1.1.0", "name": "pbench-status", "type": filepath.Base(b.cfg.Plugin), "dataDir": dataDir}
		for k, v := range extra {
			m[k] = v
		}
		raw, _ := json.Marshal(m)
		return raw
	}
	type cmd struct {
		name  string
		env   []string
		stdin []byte
	}
	cmds := []cmd{
		{"passt-portmap VERSION (start-up alone)", baseEnv("CNI_COMMAND=VERSION"), []byte(`{"cniVersion":"1.1.0"}`)},
		{"passt-portmap STATUS, attached (fixed socket: reads its tables)", baseEnv("CNI_COMMAND=STATUS", "CNI_PATH="+filepath.Dir(b.cfg.Plugin)), conf(map[string]any{"socket": b.env.Sock, "pidFile": b.env.PIDFile})},
		{"passt-portmap STATUS, managed (checks the pasta binary)", baseEnv("CNI_COMMAND=STATUS", "CNI_PATH="+filepath.Dir(b.cfg.Plugin)), conf(map[string]any{"pasta": b.env.PastaBin})},
	}
	row := &StatusRow{Oublock: map[string][]int64{}}
	b.R.Status = row
	for _, c := range cmds {
		row.Runs = append(row.Runs, &Series{Tool: c.name, Op: "STATUS"})
	}
	for run := 0; run < b.cfg.StatusRuns; run++ {
		for k := range cmds {
			i := (k + run) % len(cmds)
			sm, _, err := runTimed(ctx, []string{b.cfg.Plugin}, cmds[i].env, cmds[i].stdin)
			row.Runs[i].add(sm, err)
			if err == nil {
				row.Oublock[cmds[i].name] = append(row.Oublock[cmds[i].name], sm.Oublock)
			} else if run == 0 {
				log.Printf("  %s: %v", cmds[i].name, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	step := func(name string, fn func() error) {
		med, p90, err := timeN(b.cfg.StatusRuns, fn)
		s := Step{Name: name, N: b.cfg.StatusRuns, Median: med, P90: p90}
		if err != nil {
			s.Err = err.Error()
		}
		row.Steps = append(row.Steps, s)
		log.Printf("  %-60s median %s ms", name, ms(med))
	}
	step("write and fsync a 128 KiB file in dataDir, remove it (STATUS's check before)", func() error {
		return probeWrite(dataDir, 128<<10)
	})
	step("statfs of dataDir: read-only flag, free space and inodes (STATUS's check now)", func() error {
		var st unix.Statfs_t
		return unix.Statfs(dataDir, &st)
	})
	return nil
}

// probeWrite is the data directory check STATUS made before statfs: a
// file of size bytes written, synced and removed.
func probeWrite(dir string, size int) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, size)); err != nil {
		return err
	}
	return f.Sync()
}
