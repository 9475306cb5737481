package forwarder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// IdentFileName is the identity record of the forwarder the last start
// made: written by the plugin, never by pasta, once the process pasta
// named in its PID file was checked. Stop and Running go by it alone.
const IdentFileName = "pasta.id"

// fileID is a file's device and inode.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func (f fileID) known() bool { return f.Ino != 0 }

// identity is what the plugin knows of the forwarder it started: the
// daemon's process (PID and start time: together they name one process
// for good), its uid, the process that created the listening control
// socket as SO_PEERCRED reports it, the socket file, and the namespace it
// serves.
type identity struct {
	Proc    proc   `json:"process"`
	UID     uint32 `json:"uid"`
	PeerPID int32  `json:"peerPID"`
	Socket  fileID `json:"socket"`
	NetNS   string `json:"netns"`
	NetNSID fileID `json:"netnsID"`
}

// errIdentDamaged is an identity record that cannot be decoded: the
// forwarder it named is looked for as if the record were lost.
var errIdentDamaged = errors.New("identity record damaged")

// readIdent reads the identity record; nil and no error when there is
// none. A record that is not a regular file of ours is an
// *safefs.UnsafeError; one that does not decode wraps errIdentDamaged.
func readIdent(d *safefs.Dir) (*identity, error) {
	b, err := d.ReadFile(IdentFileName, 4096)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil || id.Proc.PID <= 0 || id.Proc.Start == 0 {
		return nil, fmt.Errorf("%s: %w", d.Join(IdentFileName), errIdentDamaged)
	}
	return &id, nil
}

// writeIdent records id, atomically (a rename) but not durably: the
// forwarder does not outlive the machine.
func writeIdent(d *safefs.Dir, id *identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	return d.WriteAtomic(IdentFileName, "."+IdentFileName+".tmp-", append(b, '\n'), 0o600, false)
}

// statID returns the device and inode of path (following links: a
// namespace is named by a bind mount or /proc path), zero when it cannot
// be examined.
func statID(path string) fileID {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return fileID{}
	}
	return fileID{Dev: st.Dev, Ino: st.Ino}
}

// serves reports whether the forwarder of id serves the namespace at
// netns: the same namespace file, or, where neither can be examined, the
// same path.
func (id *identity) serves(netns string) bool {
	now := statID(netns)
	if now.known() && id.NetNSID.known() {
		return now == id.NetNSID
	}
	return !now.known() && !id.NetNSID.known() && filepath.Clean(netns) == filepath.Clean(id.NetNS)
}

// current returns the forwarder of id when it still runs: the process
// recorded, started when recorded, of the plugin's uid.
func (id *identity) current() (proc, bool) {
	if id == nil || id.UID != uint32(os.Geteuid()) || !id.Proc.alive() || !ownedByUs(id.Proc.PID) {
		return proc{}, false
	}
	return id.Proc, true
}

// holdsSocket reports whether pid holds the listening control socket at
// path, looked up in the process's own network namespace
// (/proc/PID/net/unix) and fd table. It is false where the fd table
// cannot be read (another user's, or a non-dumpable process of the
// caller's uid when the caller is not root).
func holdsSocket(pid int, path string) bool {
	_, held, err := procnet.HoldsListener(pid, path)
	return err == nil && held
}

// lostForwarders finds the forwarder of an attachment whose identity
// record is lost (a start killed before it wrote one) or damaged: the
// process in pasta's PID file if it is of our uid and holds the
// attachment's listening control socket; with scan, failing that, every
// process of our uid holding that socket, found by a scan of every
// process (the only scan: it costs as many reads as there are processes,
// and runs only when the record is lost).
func lostForwarders(d *safefs.Dir, socket string, scan bool) []proc {
	if pid, err := readPIDFile(d); err == nil && pid > 0 && ownedByUs(pid) && holdsSocket(pid, socket) {
		if start := processStart(pid); start != 0 {
			return []proc{{PID: pid, Start: start}}
		}
	}
	if !scan {
		return nil
	}
	inodes, err := procnet.UnixListeners(socket)
	if err != nil || len(inodes) == 0 {
		return nil
	}
	want := map[uint64]bool{}
	for _, ino := range inodes {
		want[ino] = true
	}
	var out []proc
	self := os.Getpid()
	_ = procnet.EachHolder(func(ino uint64) bool { return want[ino] }, func(pid int, _ []uint64) bool {
		if pid != self && ownedByUs(pid) {
			if start := processStart(pid); start != 0 {
				out = append(out, proc{PID: pid, Start: start})
			}
		}
		return true
	})
	return out
}
