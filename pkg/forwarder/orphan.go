package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Orphaned reports whether the attachment in dir outlived the network
// namespace its forwarder was started for, netns (the path given at ADD):
// the path no longer exists, or the forwarder still runs but the path now
// names another namespace than the one its identity record says it
// serves. A runtime removed the namespace without a DEL (containerd, when
// the DEL of a pod's earlier network failed, or after its configuration
// changed), and no DEL will come: pasta itself exits when the namespace's
// path is removed, but its directory and the ownership record stay. A
// namespace that exists is never called gone, even when the forwarder is
// not running: its DEL may still come. why says what was found. The cost
// is a few stat calls, whatever runs on the machine.
func Orphaned(dir, netns string) (orphaned bool, why string, err error) {
	if netns == "" {
		return false, "", errors.New("forwarder: no network namespace path to check")
	}
	if _, err := os.Stat(netns); errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Sprintf("network namespace %s no longer exists", netns), nil
	} else if err != nil {
		return false, "", fmt.Errorf("forwarder: network namespace %s: %w", netns, err)
	}
	inst, err := instanceFor(dir)
	if err != nil {
		return false, "", err
	}
	d, err := openDir(inst.Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	defer d.Close()
	p, id, ok, err := running(d, inst)
	if err != nil || !ok || id == nil {
		return false, "", err // not running, or cannot tell: leave it
	}
	if id.serves(netns) || !id.NetNSID.known() {
		return false, "", nil
	}
	return true, fmt.Sprintf("%s now names another network namespace than the one pasta (pid %d) serves", netns, p.PID), nil
}
