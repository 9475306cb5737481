package procnet

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// pfExiting is the kernel's PF_EXITING: the process is in exit().
const pfExiting = 0x4

// Exiting reports whether process pid is in exit() and not yet a zombie.
// Such a process has given up its memory (its command line reads empty)
// but may still hold its files: a pasta's tap device stays in its
// namespace until they are closed.
func Exiting(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", Root, pid))
	return err == nil && StatExiting(b)
}

// StatExiting reads the content of /proc/PID/stat: the state (third
// field) is not Z or X, and the flags (ninth field) hold PF_EXITING. The
// command name (second field) may hold spaces and parentheses, so fields
// are counted after its last ')'.
func StatExiting(b []byte) bool {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 7 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}
