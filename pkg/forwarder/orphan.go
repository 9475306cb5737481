package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
)

// Orphaned reports whether the attachment in dir outlived the network
// namespace its forwarder was started for, netns (the path given at ADD):
// the path no longer exists, or the forwarder still runs but the path now
// names another namespace than the one it holds. A runtime removed the
// namespace without a DEL (containerd, when the DEL of a pod's earlier
// network failed, or after its configuration changed), and no DEL will
// come: pasta itself exits when the namespace's path is removed, but its
// directory and the ownership record stay. A namespace that exists is
// never called gone, even when the forwarder is not running: its DEL may
// still come. why says what was found.
func Orphaned(dir, netns string) (orphaned bool, why string, err error) {
	if netns == "" {
		return false, "", errors.New("forwarder: no network namespace path to check")
	}
	st, err := os.Stat(netns)
	if errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Sprintf("network namespace %s no longer exists", netns), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("forwarder: network namespace %s: %w", netns, err)
	}
	pid, ok, err := Running(dir)
	if err != nil || !ok {
		return false, "", err
	}
	// pasta runs in the caller's namespace and holds the one it serves
	// open.
	held, err := procnet.HeldNetNS(pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return false, "", nil // exited meanwhile
	}
	if err != nil {
		return false, "", fmt.Errorf("forwarder: namespaces held by pasta (pid %d): %w", pid, err)
	}
	if len(held) == 0 {
		return false, "", nil // cannot tell: leave it
	}
	for _, h := range held {
		if hs, err := os.Stat(h); err == nil && os.SameFile(st, hs) {
			return false, "", nil
		}
	}
	return true, fmt.Sprintf("%s now names another network namespace than the one pasta (pid %d) serves", netns, pid), nil
}
