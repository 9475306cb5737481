package forwarder

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
)

// errMalformedPID marks a PID file whose content is not a PID. Stop and
// Ensure then fall back to finding the forwarder by its command line.
var errMalformedPID = procnet.ErrMalformedPID

// parsePID decodes a PID file (procnet.ParsePID).
func parsePID(b []byte) (int, error) { return procnet.ParsePID(b) }

// readPIDFile returns the PID in path; (0, nil) when the file does not
// exist or is empty (pasta creates the file before it writes the PID: a
// start still under way, or one that died in between).
func readPIDFile(path string) (int, error) {
	pid, err := procnet.ReadPIDFile(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, procnet.ErrNoPID) {
		return 0, nil
	}
	return pid, err
}

// splitCmdline splits the content of /proc/PID/cmdline into arguments.
func splitCmdline(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// cmdlineHasSocket reports whether the arguments name socket as pasta's
// control socket: "-c SOCK", "--conf-path SOCK", "--conf-path=SOCK" or
// "-cSOCK". The path is compared as given: this package always passes the
// same absolute path.
func cmdlineHasSocket(args []string, socket string) bool {
	for i, a := range args {
		switch {
		case (a == "-c" || a == "--conf-path") && i+1 < len(args) && args[i+1] == socket:
			return true
		case a == "--conf-path="+socket, a == "-c"+socket:
			return true
		}
	}
	return false
}

// processIsOurs reports whether pid is a live process whose command line
// names socket as its control socket. A process that is gone, a zombie
// (empty command line) or another program that took over the PID is not
// ours: (false, nil).
func processIsOurs(pid int, socket string) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", procnet.Root, pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read command line of process %d: %w", pid, err)
	}
	return cmdlineHasSocket(splitCmdline(b), socket), nil
}

// Running reports whether the forwarder of the attachment in dir runs:
// the PID file names a live process that is ours. ok is false with a nil
// error when there is no PID file, the process is gone, or the PID was
// reused by another process; pid is then 0. err is set only when the
// state cannot be read (e.g. a malformed PID file or a permission error).
func Running(dir string) (pid int, ok bool, err error) {
	inst, err := instanceFor(dir)
	if err != nil {
		return 0, false, err
	}
	return running(inst)
}

func running(inst Instance) (int, bool, error) {
	pid, err := readPIDFile(inst.PIDFile)
	if err != nil || pid == 0 {
		return 0, false, err
	}
	ours, err := processIsOurs(pid, inst.Socket)
	if err != nil || !ours {
		return 0, false, err
	}
	return pid, true, nil
}

// cmdlineOption returns the value of the last "--name VALUE" or
// "--name=VALUE" in args, and whether there was one.
func cmdlineOption(args []string, name string) (string, bool) {
	val, found := "", false
	for i, a := range args {
		if a == name && i+1 < len(args) {
			val, found = args[i+1], true
		} else if v, ok := strings.CutPrefix(a, name+"="); ok {
			val, found = v, true
		}
	}
	return val, found
}

// processNetNS returns the --netns argument of process pid ("" when it
// has none or is gone).
func processNetNS(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", procnet.Root, pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read command line of process %d: %w", pid, err)
	}
	ns, _ := cmdlineOption(splitCmdline(b), "--netns")
	return ns, nil
}

// logTail returns the last lines of pasta's output and log, prefixed for
// appending to an error message; "" when both are empty or unreadable.
func logTail(inst Instance) string {
	var parts []string
	for _, p := range []string{inst.OutFile, inst.LogFile} {
		if t := tailLines(p, 6, 4096); t != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", filepath.Base(p), t))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

// tailLines returns up to n last non-empty lines of the last limit bytes of
// the file at path, joined with " | ".
func tailLines(path string, n int, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-limit, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// OwnerEnv is the environment variable every process of a managed start
// inherits, set to the attachment's socket path: a process that carries
// it is ours even when its command line does not say so (a wrapper's
// child) or it left the process group (a daemon).
const OwnerEnv = "PASST_PORTMAP_FORWARDER"

// environHasOwner reports whether the environment block b (as in
// /proc/PID/environ) sets OwnerEnv to socket.
func environHasOwner(b []byte, socket string) bool {
	want := OwnerEnv + "=" + socket
	for _, kv := range bytes.Split(b, []byte{0}) {
		if string(kv) == want {
			return true
		}
	}
	return false
}

// processOwned reports whether pid is a live process of the attachment
// whose control socket is socket: its command line names the socket, or
// it inherited OwnerEnv naming it. A process whose environment cannot be
// read (another user's, rootless) counts by its command line alone.
func processOwned(pid int, socket string) bool {
	if ours, err := processIsOurs(pid, socket); err == nil && ours {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/environ", procnet.Root, pid))
	return err == nil && environHasOwner(b, socket)
}

// findOwned returns the live processes of the attachment whose control
// socket is socket (see processOwned), other than the caller, and, when
// pgid is not 0, every member of process group pgid as long as one of
// them is owned: a group id is not reused while the group has a member,
// so a group with one of ours in it is the group a start of this
// attachment made (a wrapper's children that dropped OwnerEnv are found
// so). Processes that vanish during the scan are skipped.
func findOwned(socket string, pgid int) ([]int, error) {
	all, err := procnet.Processes()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	if pgid != 0 && syscall.Kill(-pgid, 0) != nil {
		pgid = 0 // the group has no member left: no /proc/PID/stat to read
	}
	var pids, group []int
	groupOurs := false
	for _, pid := range all {
		if pid == self {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", procnet.Root, pid))
		if err != nil || len(cmdline) == 0 {
			continue // gone, a zombie or a kernel thread
		}
		owned := cmdlineHasSocket(splitCmdline(cmdline), socket)
		if !owned {
			env, err := os.ReadFile(fmt.Sprintf("%s/%d/environ", procnet.Root, pid))
			owned = err == nil && environHasOwner(env, socket)
		}
		if owned {
			pids = append(pids, pid)
		}
		if pgid == 0 {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procnet.Root, pid)); err == nil {
			if g, ok := statPGID(b); ok && g == pgid {
				group = append(group, pid)
				groupOurs = groupOurs || owned
			}
		}
	}
	if groupOurs {
		for _, pid := range group {
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// statPGID returns the process group id in the content of /proc/PID/stat
// ("PID (COMM) STATE PPID PGRP ..."; COMM may hold spaces and
// parentheses, so the fields are counted after the last ')').
func statPGID(b []byte) (int, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, false
	}
	g, err := strconv.Atoi(f[2])
	if err != nil || g <= 0 {
		return 0, false
	}
	return g, true
}

// statLife returns the state letter and the start time (in clock ticks
// since boot) in the content of /proc/PID/stat, fields 3 and 22.
func statLife(b []byte) (state byte, start uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// processStart returns the start time of pid, or 0 when it cannot be read.
func processStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procnet.Root, pid))
	if err != nil {
		return 0
	}
	_, start, _ := statLife(b)
	return start
}

// exited reports whether pid, which started at start (0: unknown), has
// finished exiting: gone, a zombie, or its PID taken by a later process.
// A process's command line empties early in its exit, before its files
// (pasta's listening sockets) are closed, so an empty command line alone
// does not free the ports for the next forwarder.
func exited(pid int, start uint64) bool {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procnet.Root, pid))
	if err != nil {
		return true
	}
	state, now, ok := statLife(b)
	if !ok {
		return true
	}
	return state == 'Z' || state == 'X' || (start != 0 && now != start)
}
