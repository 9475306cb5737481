package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// forkingPasta writes a wrapper around the real pasta that first forks
// three children (two stay in the process group, one of them with an
// empty environment; one leaves with setsid) and records their PIDs in
// the returned file. extra goes before pasta's arguments.
func forkingPasta(t *testing.T, extra string) (script, children string) {
	t.Helper()
	pasta, _ := pastatest.Bins(t)
	dir := pastatest.TempDir(t, "left-")
	children = filepath.Join(dir, "children")
	script = filepath.Join(dir, "pasta")
	body := fmt.Sprintf(`#!/bin/sh
sleep 300 & echo $! >> %[1]s
env -i sleep 300 & echo $! >> %[1]s
setsid sleep 300 & echo $! >> %[1]s
exec %[2]s %[3]s "$@"
`, children, pasta, extra)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, children
}

// assertLeftNothing: the wrapper's children that stayed in the process
// group of the start are gone, and no process names a path under dataDir
// (pasta names its socket there). The child that left the group with
// setsid, whose parent has exited, cannot be told from any other process
// and is not tracked (README, Security): it is killed here.
func assertLeftNothing(t *testing.T, children, dataDir string) {
	t.Helper()
	b, err := os.ReadFile(children)
	if err != nil {
		t.Fatalf("the wrapper recorded no children: %v", err)
	}
	pids := strings.Fields(string(b))
	if len(pids) != 3 {
		t.Fatalf("children %v, want 3", pids)
	}
	for i, p := range pids {
		pid, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			continue
		}
		waitGone(t, pid)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dataDir) {
			t.Errorf("process %s still runs: %q", e.Name(), strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// TestManagedLeavesNothing: with a pasta wrapper that forks, the real
// pasta and every process the wrapper started in its process group are
// gone after a failed ADD, after DEL and after GC.
func TestManagedLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		then        func(t *testing.T, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
	}{
		{"failed ADD", "--zz-not-an-option", nil},
		{"DEL", "", func(t *testing.T, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
			ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
			defer cancel()
			return cni.DelNetworkList(ctx, list, rt)
		}},
		{"GC", "", func(t *testing.T, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
			ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
			defer cancel()
			return cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, children := forkingPasta(t, tc.extra)
			n := pastatest.NewNetNS(t)
			dataDir := pastatest.TempDir(t, "left-data-")
			conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "leftover",
			  "plugins": [{"type": "passt-portmap", "pasta": %q, "dataDir": %q, "timeout": "15s",
			               "capabilities": {"portMappings": true}}]}`, script, dataDir)
			list, err := libcni.ConfListFromBytes([]byte(conf))
			if err != nil {
				t.Fatal(err)
			}
			cni := libcni.NewCNIConfigWithCacheDir([]string{managedPlugin(t)}, filepath.Join(dataDir, "cache"), nil)
			rt := &libcni.RuntimeConf{ContainerID: "left-" + n.Name, NetNS: n.Path, IfName: "eth0"}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
				defer cancel()
				_ = cni.DelNetworkList(ctx, list, rt)
			})

			ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
			defer cancel()
			_, err = cni.AddNetworkList(ctx, list, rt)
			if tc.then == nil {
				if err == nil {
					t.Fatal("ADD with a pasta that refuses its arguments succeeded")
				}
				t.Logf("ADD: %v", err)
				assertLeftNothing(t, children, dataDir)
				// The runtime's DEL after the failed ADD succeeds.
				if err := cni.DelNetworkList(ctx, list, rt); err != nil {
					t.Fatalf("DEL after the failed ADD: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if pids := processesUnder(t, dataDir); len(pids) != 1 {
				t.Fatalf("processes naming %s after ADD: %v, want the one pasta", dataDir, pids)
			}
			if err := tc.then(t, cni, list, rt); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			assertLeftNothing(t, children, dataDir)
		})
	}
}

// processesUnder returns the PIDs of processes whose command line names a
// path under dir.
func processesUnder(t *testing.T, dir string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}
