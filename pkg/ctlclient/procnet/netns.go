package procnet

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// HeldNetNS returns the paths (/proc/PID/fd/N) of the network namespace
// files that process pid holds open, other than its own namespace
// (ReadFDs(pid).NetNS()). It fails where /proc/PID/fd is not readable.
func HeldNetNS(pid int) ([]string, error) {
	t, err := ReadFDs(pid)
	if err != nil {
		return nil, err
	}
	return t.NetNS(), nil
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

// DiagSelectIn is DiagSelect inside the network namespace at nsPath. It
// enters the namespace on a dedicated OS thread (setns needs
// CAP_SYS_ADMIN), where fn runs, and leaves the calling goroutine where
// it was.
func DiagSelectIn(nsPath string, sel DiagSel, fn func(InetSocket)) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if it could not return to its own
		// namespace: it then ends with this goroutine.
		ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open %s: %w", nsPath, err)
			return
		}
		defer unix.Close(ns)
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter network namespace %s: %w", nsPath, err)
			return
		}
		err = DiagSelect(sel, fn)
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}
