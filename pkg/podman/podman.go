// Package podman tells the plugin what it can learn about a Podman that
// runs it: whether a podman process is among its ancestors, and whether
// that Podman reserves the published host ports itself.
//
// Rootful Podman (4.x with its CNI backend, and 5.x) binds every published
// host port in its own process and hands the sockets to conmon for the
// container's life ("port reservation"), unless containers.conf says
// enable_port_reservation = false. A forwarder that binds the same ports
// for the same container cannot coexist with that: whichever binds second
// fails. Rootless Podman, and --network slirp4netns, reserve nothing.
package podman

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Process is a podman process found among the caller's ancestors.
type Process struct {
	PID  int
	Comm string
}

// Ancestor returns the nearest ancestor of process pid whose name is
// "podman", looking at most depth levels up (libcni runs a plugin as a
// direct child; a wrapper script adds a level). proc is where proc is
// mounted. ok is false when there is none or the chain cannot be read.
func Ancestor(proc string, pid, depth int) (p Process, ok bool) {
	// One read of /proc/PID/stat per level: it holds the command name
	// (as /proc/PID/comm does) and the parent's PID.
	ppid, err := parentOf(proc, pid)
	for range depth {
		if err != nil || ppid <= 1 {
			return Process{}, false
		}
		b, rerr := os.ReadFile(filepath.Join(proc, strconv.Itoa(ppid), "stat"))
		if rerr != nil {
			return Process{}, false
		}
		if statComm(b) == "podman" {
			return Process{PID: ppid, Comm: "podman"}, true
		}
		ppid, err = ParseStatPPID(b)
	}
	return Process{}, false
}

// statComm returns the command name of a /proc/PID/stat line: between
// the first "(" and the last ")".
func statComm(b []byte) string {
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return ""
	}
	return s[i+1 : j]
}

// parentOf reads the parent PID from /proc/PID/stat. The command name in
// parentheses may itself hold spaces and parentheses: the fields after
// the last ")" are fixed.
func parentOf(proc string, pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return ParseStatPPID(b)
}

// ParseStatPPID returns the parent PID field of a /proc/PID/stat line.
func ParseStatPPID(b []byte) (int, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 2", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil || ppid < 0 {
		return 0, fmt.Errorf("stat: parent PID %q", f[1])
	}
	return ppid, nil
}

// InUserNamespace reports whether the caller runs in a user namespace
// other than the initial one (the rootless case): the initial one maps
// every uid, "0 0 4294967295".
func InUserNamespace(proc string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(proc, "self", "uid_map"))
	if err != nil {
		return false, err
	}
	return strings.Join(strings.Fields(string(b)), " ") != "0 0 4294967295", nil
}

// Reservation is the effective enable_port_reservation of a Podman.
type Reservation struct {
	Enabled bool
	// Source is the last file that set it; "" means Podman's default
	// (true).
	Source string
	// Only is CONTAINERS_CONF when set: then Podman reads that file
	// alone, and drop-ins elsewhere do not count.
	Only string
}

// ConfigFiles returns the containers.conf files Podman reads, in its
// order: CONTAINERS_CONF alone when set; otherwise
// /usr/share/containers/containers.conf, its containers.conf.d drop-ins
// (Podman 4.8 and later), /etc/containers/containers.conf and its
// containers.conf.d drop-ins (*.conf, in lexical order); then
// CONTAINERS_CONF_OVERRIDE (4.8 and later). Files that do not exist are
// left out. root prefixes every fixed path (tests); getenv reads the
// environment Podman passed on.
func ConfigFiles(root string, getenv func(string) string) ([]string, error) {
	var files []string
	if only := getenv("CONTAINERS_CONF"); only != "" {
		files = append(files, only)
	} else {
		for _, base := range []string{"/usr/share/containers/containers.conf", "/etc/containers/containers.conf"} {
			p := filepath.Join(root, base)
			if _, err := os.Stat(p); err == nil {
				files = append(files, p)
			}
			ds, err := dropIns(p + ".d")
			if err != nil {
				return nil, err
			}
			files = append(files, ds...)
		}
	}
	if o := getenv("CONTAINERS_CONF_OVERRIDE"); o != "" {
		files = append(files, o)
	}
	return files, nil
}

func dropIns(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".conf") && !e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// PortReservation reads Podman's effective enable_port_reservation from
// the files ConfigFiles names, in their order: the last file that sets it
// wins. A file that cannot be read or parsed is an error naming it (and
// the line).
func PortReservation(root string, getenv func(string) string) (Reservation, error) {
	files, err := ConfigFiles(root, getenv)
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Enabled: true, Only: getenv("CONTAINERS_CONF")}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Reservation{}, fmt.Errorf("read Podman configuration: %w", err)
		}
		v, ok, err := reservationIn(b)
		if err != nil {
			return Reservation{}, fmt.Errorf("Podman configuration %s: %w", f, err)
		}
		if ok {
			r.Enabled, r.Source = v, f
		}
	}
	return r, nil
}

// Depth is how far up the process chain a podman process is looked for:
// libcni runs a CNI plugin as Podman's direct child, netavark runs a
// driver as its own child (Podman, netavark, plugin), and a wrapper
// script adds a level.
const Depth = 4

// ReservationError is a rootful Podman that reserves the published host
// ports itself, running a plugin whose forwarder has to bind the same
// ports: whichever binds second fails. Podman 4 without a user namespace
// binds after the plugin and fails with its own "address already in
// use", which names neither the plugin nor the setting; Podman 4 with a
// user namespace, and Podman 5.3 and later, bind before the plugin runs,
// and the forwarder's ports would not listen.
type ReservationError struct {
	Podman      Process
	Reservation Reservation
}

// Msg is the error in a few words.
func (e *ReservationError) Msg() string {
	return "Podman reserves the published host ports itself: set enable_port_reservation = false"
}

// Details says why and where to set it.
func (e *ReservationError) Details() string {
	from := "Podman's default"
	if e.Reservation.Source != "" {
		from = "set in " + e.Reservation.Source
	}
	return fmt.Sprintf("passt-portmap runs under Podman (pid %d), whose port reservation is on (%s): Podman binds every published host port itself and keeps it open for the container's life (in the podman process while it sets the container up, then in conmon), and the forwarder has to bind the same ports, so whichever binds second fails; %s",
		e.Podman.PID, from, ReservationFix(e.Reservation.Only))
}

func (e *ReservationError) Error() string { return e.Msg() + ": " + e.Details() }

// Verdict splits CheckReservation's answer the way every front end acts
// on it: a *ReservationError refuses the call (the core describes it as
// a bad configuration); any other error only warns: Podman's
// configuration could not be read, the call goes on, and the listener
// check names the holder of a port that does not listen.
func Verdict(err error) (refuse, warn error) {
	var re *ReservationError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &re):
		return err, nil
	}
	return nil, err
}

// CheckReservation returns a *ReservationError when process pid runs
// under a rootful Podman (an ancestor within Depth levels, in the initial
// user namespace) whose port reservation is on. Rootless Podman reserves
// nothing. proc is where proc is mounted, root prefixes Podman's
// configuration files (see ConfigFiles). Another error says that Podman's
// configuration could not be read: the caller may go on, and a port that
// does not listen is then explained by its holder.
func CheckReservation(proc string, pid int, root string, getenv func(string) string) error {
	pm, ok := Ancestor(proc, pid, Depth)
	if !ok {
		return nil
	}
	if userns, err := InUserNamespace(proc); err != nil || userns {
		return nil
	}
	r, err := PortReservation(root, getenv)
	if err != nil {
		return fmt.Errorf("cannot tell whether Podman (pid %d) reserves the published ports: %w", pm.PID, err)
	}
	if !r.Enabled {
		return nil
	}
	return &ReservationError{Podman: pm, Reservation: r}
}

// RootlessNetavark reports whether process pid was started by netavark
// running for a rootless Podman: its parent is "netavark" with
// "--rootless=true" (or "--rootless true") among its arguments, as Podman
// runs it for a rootless user. Rootless Podman forwards the published
// host ports itself (rootlessport, from the host's network namespace to
// the container's address), so a forwarder in the rootless network
// namespace, where netavark and its plugins run, would bind ports nothing
// reaches. A parent that cannot be read is not such a netavark.
func RootlessNetavark(proc string, pid int) bool {
	ppid, err := parentOf(proc, pid)
	if err != nil || ppid <= 1 {
		return false
	}
	comm, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(ppid), "comm"))
	if err != nil || strings.TrimSpace(string(comm)) != "netavark" {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(ppid), "cmdline"))
	return err == nil && RootlessArg(cmdline)
}

// RootlessArg reports whether a NUL-separated command line
// (/proc/PID/cmdline) of netavark sets --rootless to true.
func RootlessArg(cmdline []byte) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return false
		case strings.HasPrefix(a, "--rootless="):
			v, err := strconv.ParseBool(strings.TrimPrefix(a, "--rootless="))
			return err == nil && v
		case a == "--rootless" && i+1 < len(args):
			v, err := strconv.ParseBool(args[i+1])
			return err == nil && v
		}
	}
	return false
}
