package attach

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
)

// A managed forwarder's PID file is read through its checked directory:
// its own is read, one reached through a link is not (a plain open of
// the path would follow the link to the directory); an attached
// forwarder's PID file, named by the configuration, is read by its path.
func TestClientReadsManagedPIDFileSafely(t *testing.T) {
	dataDir := t.TempDir()
	fwds := filepath.Join(dataDir, forwardersName)
	own := filepath.Join(fwds, "0123456789abcdef")
	outside := t.TempDir()
	for _, d := range []string{own, outside} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, forwarder.PIDFileName), []byte("4242\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	linked := filepath.Join(fwds, "fedcba9876543210")
	if err := os.Symlink(outside, linked); err != nil {
		t.Fatal(err)
	}
	o := &Options{DataDir: dataDir}
	c := &Core{}
	for _, tc := range []struct {
		name    string
		dir     string
		managed bool // ReadPID set
		ok      bool // and it reads 4242
	}{
		{"managed", own, true, true},
		{"managed, its directory a link", linked, true, false},
		{"attached", outside, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := c.client(o, filepath.Join(tc.dir, forwarder.SocketName), filepath.Join(tc.dir, forwarder.PIDFileName))
			if (cl.ReadPID != nil) != tc.managed {
				t.Fatalf("ReadPID set: %v, want %v", cl.ReadPID != nil, tc.managed)
			}
			if !tc.managed {
				return
			}
			pid, err := cl.ReadPID()
			if tc.ok && (err != nil || pid != 4242) {
				t.Fatalf("ReadPID: %d, %v; want 4242", pid, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("ReadPID through a link: %d, no error", pid)
			}
		})
	}
}
