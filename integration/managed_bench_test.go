package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// BenchmarkManagedStart measures what a managed ADD spends on the
// forwarder itself: starting pasta on a bare namespace until its control
// socket answers, then reading the network back (Ensure + ReadNetwork).
// Making and deleting the namespace, and Stop, are not timed.
//
//	go test -run XXX -bench ManagedStart -benchtime 20x ./integration/
func BenchmarkManagedStart(b *testing.B) {
	benchManaged(b, true)
}

// BenchmarkManagedStop measures Stop of a running managed pasta (what DEL
// spends on it): SIGTERM, wait for exit, remove socket and PID file.
func BenchmarkManagedStop(b *testing.B) {
	benchManaged(b, false)
}

func benchManaged(b *testing.B, start bool) {
	pasta, _ := pastatest.Bins(b)
	dir, err := os.MkdirTemp("/tmp", "pp-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("pp-bench-%d-%d", os.Getpid(), i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v: %s", err, out)
		}
		cfg := forwarder.Config{Pasta: pasta, NetNS: "/run/netns/" + name, IfName: "eth0",
			Dir: fmt.Sprintf("%s/%d", dir, i), Timeout: managedTimeout}
		if start {
			b.StartTimer()
		}
		if _, err := forwarder.Ensure(ctx, cfg); err != nil {
			b.Fatalf("Ensure: %v", err)
		}
		if start {
			if _, err := forwarder.ReadNetwork(cfg); err != nil {
				b.Fatalf("ReadNetwork: %v", err)
			}
			b.StopTimer()
		} else {
			b.StartTimer()
		}
		if err := forwarder.Stop(ctx, cfg.Dir); err != nil {
			b.Fatalf("Stop: %v", err)
		}
		b.StopTimer()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns del: %v: %s", err, out)
		}
	}
}

// BenchmarkManagedCNIAdd measures a managed ADD through libcni with one
// port mapping on a bare namespace: plugin start, pasta start, read-back,
// rule transaction and verification. Namespace set-up and DEL are not
// timed.
//
//	go test -run XXX -bench ManagedCNIAdd -benchtime 10x ./integration/
func BenchmarkManagedCNIAdd(b *testing.B) {
	benchManagedCNI(b, true)
}

// BenchmarkManagedCNIDel measures the DEL of such an attachment: rules
// removed, pasta stopped, files removed.
func BenchmarkManagedCNIDel(b *testing.B) {
	benchManagedCNI(b, false)
}

func benchManagedCNI(b *testing.B, add bool) {
	pasta, _ := pastatest.Bins(b)
	pluginDir := managedPlugin(b)
	dataDir, err := os.MkdirTemp("/tmp", "pp-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dataDir)
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "pp-bench",
	  "plugins": [{"type": "passt-portmap", "pasta": %q, "dataDir": %q, "capabilities": {"portMappings": true}}]}`, pasta, dataDir)))
	if err != nil {
		b.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, dataDir+"/cache", nil)
	ctx := context.Background()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("pp-bench-%d-%d", os.Getpid(), i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v: %s", err, out)
		}
		rt := &libcni.RuntimeConf{ContainerID: name, NetNS: "/run/netns/" + name, IfName: "eth0",
			CapabilityArgs: map[string]any{"portMappings": []map[string]any{
				{"hostPort": int(pastatest.FreePort(b, "tcp")), "containerPort": 80, "protocol": "tcp"},
			}}}
		if add {
			b.StartTimer()
		}
		if _, err := cni.AddNetworkList(ctx, list, rt); err != nil {
			b.Fatalf("ADD: %v", err)
		}
		if add {
			b.StopTimer()
		} else {
			b.StartTimer()
		}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			b.Fatalf("DEL: %v", err)
		}
		b.StopTimer()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns del: %v: %s", err, out)
		}
	}
}
