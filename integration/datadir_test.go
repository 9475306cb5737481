package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/integration/pastatest"
)

// TestStatusFullDataDir: STATUS reports not ready (50) when dataDir cannot
// take a record because its file system is full, naming dataDir, and ready
// again once there is room. dataDir is a small tmpfs of the test's own,
// filled by the test.
func TestStatusFullDataDir(t *testing.T) {
	f := pastatest.Start(t)
	dataDir := t.TempDir()
	if err := unix.Mount("tmpfs", dataDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=512k,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dataDir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dataDir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dataDir, err)
		}
	})
	n := newNetwork(t, f, map[string]any{"dataDir": dataDir})
	if err := n.cni.GetStatusNetworkList(ctx(t), n.list); err != nil {
		t.Fatalf("STATUS with room in dataDir: %v", err)
	}

	fill := filepath.Join(dataDir, "fill")
	fh, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := fh.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling %s: %v", fill, err)
			}
			break
		}
	}
	fh.Close()
	te := wantCode(t, "STATUS with dataDir full", n.cni.GetStatusNetworkList(ctx(t), n.list), 50)
	if !strings.Contains(te.Details, dataDir) || !strings.Contains(te.Details, "no space left") {
		t.Errorf("STATUS does not say that dataDir %s is full: %v", dataDir, te)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if err := n.cni.GetStatusNetworkList(ctx(t), n.list); err != nil {
		t.Fatalf("STATUS with room again: %v", err)
	}
}
