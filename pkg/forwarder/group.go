package forwarder

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// si_code values of a child's exit (<linux/signal.h>).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// killGroup sends SIGKILL to the process group pgid. The caller holds
// the group leader unreaped, so the id names no one else's group.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitExited waits until the child pid has exited, without reaping it,
// and returns "" when it exited with status 0, else what ended it. When
// ctx ends first, the child's process group is killed (the child is its
// leader) and the context's error returned.
func waitExited(ctx context.Context, pid int) (string, error) {
	type result struct {
		how string
		err error
	}
	done := make(chan result, 1)
	go func() {
		how, err := waitNoReap(pid)
		done <- result{how, err}
	}()
	select {
	case r := <-done:
		return r.how, r.err
	case <-ctx.Done():
		killGroup(pid)
		_ = syscall.Kill(pid, syscall.SIGKILL) // in case it left its group
		<-done
		return "", fmt.Errorf("did not finish starting: %w", ctx.Err())
	}
}

// waitNoReap is waitid(P_PID, pid, WEXITED|WNOWAIT): the child stays a
// zombie. It decodes the exit from siginfo_t, whose union (si_pid,
// si_uid, si_status) follows three ints aligned to a pointer.
func waitNoReap(pid int) (string, error) {
	var info [128]byte
	for {
		_, _, errno := unix.Syscall6(unix.SYS_WAITID, unix.P_PID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), unix.WEXITED|unix.WNOWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return "", fmt.Errorf("wait for process %d: %w", pid, errno)
		}
		break
	}
	const ptr = int(unsafe.Sizeof(uintptr(0)))
	union := (12 + ptr - 1) &^ (ptr - 1)
	code := int32(binary.NativeEndian.Uint32(info[8:12]))
	status := int32(binary.NativeEndian.Uint32(info[union+8 : union+12]))
	switch code {
	case cldExited:
		if status == 0 {
			return "", nil
		}
		return fmt.Sprintf("exit status %d", status), nil
	case cldKilled, cldDumped:
		return fmt.Sprintf("killed by signal %d", status), nil
	}
	return fmt.Sprintf("ended with code %d, status %d", code, status), nil
}
