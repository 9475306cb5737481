package procnet

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HeldNetNS returns the paths (/proc/PID/fd/N) of the network namespace
// files that process pid holds open, other than its own namespace: pasta
// holds the namespace it is attached to, where it binds SPLICE listeners.
// It fails where /proc/PID/fd is not readable.
func HeldNetNS(pid int) ([]string, error) {
	dir := filepath.Join(Root, strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	own, _ := os.Stat(filepath.Join(Root, strconv.Itoa(pid), "ns", "net"))
	var out []string
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		link, err := os.Readlink(p)
		// A namespace opened by its /proc path reads "net:[N]"; one opened
		// by a bind mount reads as that path (ip netns: /run/netns/NAME).
		if err != nil || !(strings.HasPrefix(link, "net:[") || strings.Contains(link, "/netns/") || strings.HasSuffix(link, "/ns/net")) {
			continue
		}
		if !isNetNS(p) {
			continue
		}
		if st, err := os.Stat(p); err == nil && own != nil && os.SameFile(st, own) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// isNetNS reports whether path opens a network namespace.
func isNetNS(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	return err == nil && t == unix.CLONE_NEWNET
}

// DiagListenersIn is DiagListeners inside the network namespace at nsPath.
// It enters the namespace on a dedicated OS thread (setns needs
// CAP_SYS_ADMIN) and leaves the calling goroutine where it was.
func DiagListenersIn(nsPath string) ([]InetSocket, error) {
	type result struct {
		socks []InetSocket
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if it could not return to its own
		// namespace: it then ends with this goroutine.
		ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open %s: %w", nsPath, err)}
			return
		}
		defer unix.Close(ns)
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open own network namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", nsPath, err)}
			return
		}
		socks, err := DiagListeners()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{socks, err}
	}()
	r := <-ch
	return r.socks, r.err
}
