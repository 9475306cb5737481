// Command fakeplugin is a CNI plugin for the conformance suite's own
// tests: it maps ports with a small forwarding daemon per attachment, and
// each entry of its configuration's "break" list makes it violate exactly
// one requirement the suite checks.
//
// Configuration keys: stateDir (required), break (list; also read from
// the file ARGV0.break, as VERSION gets no configuration), iface (bool:
// also create a dummy interface CNI_IFNAME in the container and report
// it), unready (bool: STATUS reports not ready).
//
// `fakeplugin daemon NETNS PORT` is the forwarder (listener on fd 3);
// `fakeplugin hook STATEDIR` is the suite's hook: CONFORM_ACTION=remove
// kills the attachment's forwarder.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

var versions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

type mapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	HostIP        string `json:"hostIP"`
}

type conf struct {
	CNIVersion    string          `json:"cniVersion"`
	Name          string          `json:"name"`
	StateDir      string          `json:"stateDir"`
	Break         []string        `json:"break"`
	Iface         bool            `json:"iface"`
	Unready       bool            `json:"unready"`
	PrevResult    json.RawMessage `json:"prevResult"`
	RuntimeConfig *struct {
		PortMappings []mapping `json:"portMappings"`
	} `json:"runtimeConfig"`
	Valid []struct {
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
	} `json:"cni.dev/valid-attachments"`
}

type state struct {
	Netns   string `json:"netns"`
	Pid     int    `json:"pid"`
	Checked bool   `json:"checked"`
}

// cniError is the error structure of §5.
type cniError struct {
	Code    int    `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details,omitempty"`
}

func (e *cniError) Error() string { return e.Msg + ": " + e.Details }

func errf(code int, msg, f string, a ...any) error {
	return &cniError{Code: code, Msg: msg, Details: fmt.Sprintf(f, a...)}
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "daemon":
			daemon(os.Args[2], os.Args[3])
			return
		case "hook":
			if err := hook(os.Args[2]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			return
		}
	}
	os.Exit(plugin())
}

func plugin() int {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return report(nil, errf(5, "read stdin", "%v", err))
	}
	var c conf
	if err := json.Unmarshal(in, &c); err != nil {
		return report(nil, errf(6, "decode configuration", "%v", err))
	}
	// VERSION gets no configuration: its breaks come from a file beside
	// the binary, as invoked.
	if b, err := os.ReadFile(os.Args[0] + ".break"); err == nil {
		c.Break = append(c.Break, strings.Split(strings.TrimSpace(string(b)), ",")...)
	}
	cmd := os.Getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		out := map[string]any{"cniVersion": c.CNIVersion, "supportedVersions": versions}
		if c.CNIVersion == "" {
			out["cniVersion"] = "1.1.0"
		}
		if has(&c, "version-echo") {
			out["cniVersion"] = "1.0.0"
		}
		if has(&c, "version-no-supported") {
			delete(out, "supportedVersions")
		}
		return emit(out)
	}
	if !slices.Contains(versions, c.CNIVersion) {
		code := 1
		if has(&c, "error-version-code") {
			code = 7
		}
		return report(&c, errf(code, "incompatible CNI versions", "config is %q, plugin supports %v", c.CNIVersion, versions))
	}
	if has(&c, "unknown-fields") {
		var m map[string]any
		_ = json.Unmarshal(in, &m)
		for k := range m {
			known := []string{"cniVersion", "name", "type", "stateDir", "break", "iface", "unready",
				"prevResult", "runtimeConfig", "capabilities", "args"}
			if !slices.Contains(known, k) && !strings.HasPrefix(k, "cni.dev/") {
				return report(&c, errf(2, "unsupported field", "%s", k))
			}
		}
	}
	if c.StateDir == "" {
		return report(&c, errf(7, "invalid configuration", "stateDir is required"))
	}
	var out any
	switch cmd {
	case "ADD":
		out, err = add(&c)
	case "DEL":
		err = del(&c)
	case "CHECK":
		err = check(&c)
	case "STATUS":
		err = status(&c)
	case "GC":
		err = gc(&c)
	default:
		err = errf(4, "invalid CNI_COMMAND", "%q", cmd)
	}
	if err != nil {
		return report(&c, err)
	}
	if out != nil {
		return emit(out)
	}
	return 0
}

func has(c *conf, b string) bool { return c != nil && slices.Contains(c.Break, b) }

func emit(v any) int {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func report(c *conf, err error) int {
	var e *cniError
	if !errors.As(err, &e) {
		e = &cniError{Code: 999, Msg: err.Error()}
	}
	switch {
	case has(c, "error-plain"):
		fmt.Println("error:", e.Msg)
	case has(c, "error-code"):
		e.Code = 42
		emit(e)
	default:
		emit(e)
	}
	return 1
}

func statePath(c *conf) string {
	return filepath.Join(c.StateDir, c.Name, os.Getenv("CNI_CONTAINERID")+"-"+os.Getenv("CNI_IFNAME")+".json")
}

func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return &s, nil
}

func writeState(path string, s *state) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func add(c *conf) (any, error) {
	netnsPath := os.Getenv("CNI_NETNS")
	if has(c, "parallel") {
		unlock, err := lockShared(c)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	if c.RuntimeConfig == nil && has(c, "needs-runtimeconfig") {
		return nil, errf(7, "invalid configuration", "no runtimeConfig")
	}
	s := &state{Netns: netnsPath}
	if c.RuntimeConfig != nil && len(c.RuntimeConfig.PortMappings) > 0 && !has(c, "no-forward") {
		m := c.RuntimeConfig.PortMappings[0]
		ip := m.HostIP
		if ip == "" || (ip == "::1" && has(c, "ipv6-wrong")) {
			ip = "127.0.0.1"
		}
		pid, err := startDaemon(netnsPath, ip, m.HostPort, m.ContainerPort)
		if err != nil {
			return nil, err
		}
		s.Pid = pid
	}
	var ifaces []any
	if c.Iface {
		err := inNS(netnsPath, func() error {
			// A veth pair inside the namespace: no module beyond the one
			// container networking needs anyway.
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: os.Getenv("CNI_IFNAME")}, PeerName: "fkpeer0"})
		})
		if err != nil {
			return nil, errf(999, "create interface", "%v", err)
		}
		ifaces = append(ifaces, map[string]any{"name": os.Getenv("CNI_IFNAME"), "sandbox": netnsPath})
	}
	if err := writeState(statePath(c), s); err != nil {
		return nil, errf(5, "write state", "%v", err)
	}
	_ = os.Remove(statePath(c) + ".deleted")

	v := c.CNIVersion
	if has(c, "add-version") {
		v = "0.4.0"
		if c.CNIVersion == v {
			v = "1.0.0"
		}
	}
	if len(c.PrevResult) > 0 && !has(c, "prevresult-drop") {
		var prev map[string]any
		if err := json.Unmarshal(c.PrevResult, &prev); err != nil {
			return nil, errf(6, "decode prevResult", "%v", err)
		}
		prev["cniVersion"] = v
		return prev, nil
	}
	res := map[string]any{"cniVersion": v}
	if ifaces != nil {
		res["interfaces"] = ifaces
	}
	if has(c, "add-fields") {
		res["ips"] = []any{map[string]any{"address": "not-an-address"}}
	}
	return res, nil
}

// lockShared takes a lock over every attachment, as a plugin that is not
// prepared for parallel calls might: the holder waits for a contender,
// which is refused.
func lockShared(c *conf) (func(), error) {
	lock := filepath.Join(c.StateDir, "lock")
	_ = os.MkdirAll(c.StateDir, 0o700)
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		_ = os.WriteFile(lock+".contender", nil, 0o600)
		return nil, errf(11, "busy", "another call holds %s", lock)
	}
	_ = f.Close()
	for range 200 {
		if _, err := os.Stat(lock + ".contender"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() { _ = os.Remove(lock) }, nil
}

func inNS(path string, fn func() error) error {
	n, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return fn() })
}

func startDaemon(netnsPath, ip string, hostPort, containerPort int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(hostPort)))
	if err != nil {
		return 0, errf(100, "listen", "%v", err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return 0, errf(999, "listener file", "%v", err)
	}
	defer f.Close()
	self, err := os.Executable()
	if err != nil {
		return 0, errf(999, "executable", "%v", err)
	}
	cmd := exec.Command(self, "daemon", netnsPath, strconv.Itoa(containerPort))
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, errf(999, "start forwarder", "%v", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, nil
}

// daemon forwards every connection of the listener on fd 3 to
// 127.0.0.1:PORT inside the namespace.
func daemon(netnsPath, port string) {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		os.Exit(1)
	}
	target, err := ns.GetNS(netnsPath)
	if err != nil {
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			defer c.Close()
			var up net.Conn
			err := target.Do(func(ns.NetNS) error {
				var err error
				up, err = net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second)
				return err
			})
			if err != nil {
				return
			}
			defer up.Close()
			_, _ = io.Copy(c, up)
		}()
	}
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func stop(pid int) {
	if pid <= 0 || !alive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 250 {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func del(c *conf) error {
	path := statePath(c)
	if len(c.PrevResult) == 0 && has(c, "del-prevresult") {
		return errf(7, "invalid configuration", "no prevResult")
	}
	if _, err := os.Stat(os.Getenv("CNI_NETNS")); err != nil && has(c, "del-netns") {
		return errf(999, "namespace", "%v", err)
	}
	s, err := readState(path)
	if errors.Is(err, os.ErrNotExist) {
		_, tomb := os.Stat(path + ".deleted")
		if tomb == nil && has(c, "del-twice") {
			return errf(3, "already deleted", "%s", path)
		}
		if tomb != nil && has(c, "del-without-add") {
			return errf(3, "unknown container", "%s", path)
		}
		return nil
	} else if err != nil {
		return errf(5, "read state", "%v", err)
	}
	if has(c, "needs-check") && !s.Checked {
		return errf(999, "DEL before CHECK", "this plugin relies on a CHECK")
	}
	if !has(c, "del-keeps") {
		stop(s.Pid)
	}
	if c.Iface {
		_ = inNS(os.Getenv("CNI_NETNS"), func() error {
			l, err := netlink.LinkByName(os.Getenv("CNI_IFNAME"))
			if err != nil {
				return err
			}
			return netlink.LinkDel(l)
		})
	}
	if err := os.Remove(path); err != nil {
		return errf(5, "remove state", "%v", err)
	}
	return os.WriteFile(path+".deleted", nil, 0o600)
}

func check(c *conf) error {
	path := statePath(c)
	s, err := readState(path)
	if err != nil {
		return errf(3, "unknown container", "%v", err)
	}
	s.Checked = true
	if err := writeState(path, s); err != nil {
		return errf(5, "write state", "%v", err)
	}
	if has(c, "check-after-add") {
		return errf(104, "not converged", "the forwarder is not ready yet")
	}
	if has(c, "check-blind") {
		return nil
	}
	if s.Pid > 0 && !alive(s.Pid) {
		return errf(104, "forwarder gone", "pid %d", s.Pid)
	}
	if c.Iface && !has(c, "check-blind-iface") {
		err := inNS(os.Getenv("CNI_NETNS"), func() error {
			_, err := netlink.LinkByName(os.Getenv("CNI_IFNAME"))
			return err
		})
		if err != nil {
			return errf(104, "interface gone", "%v", err)
		}
	}
	return nil
}

func status(c *conf) error {
	if has(c, "status-ready") {
		return errf(50, "not available", "broken on purpose")
	}
	if c.Unready {
		if has(c, "status-code") {
			return errf(7, "not available", "with the wrong code")
		}
		return errf(50, "not available", "configured unready")
	}
	return nil
}

func gc(c *conf) error {
	if has(c, "gc-noop") {
		return nil
	}
	dir := filepath.Join(c.StateDir, c.Name)
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		valid := false
		for _, v := range c.Valid {
			if base == v.ContainerID+"-"+v.IfName {
				valid = true
			}
		}
		if valid && !has(c, "gc-all") {
			continue
		}
		if s, err := readState(f); err == nil {
			stop(s.Pid)
		}
		_ = os.Remove(f)
	}
	return nil
}

// hook removes an attachment's resources behind the plugin's back: it
// kills the attachment's forwarder.
func hook(stateDir string) error {
	if os.Getenv("CONFORM_ACTION") != "remove" {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(stateDir, "*", os.Getenv("CNI_CONTAINERID")+"-*.json"))
	for _, f := range files {
		s, err := readState(f)
		if err != nil {
			return err
		}
		stop(s.Pid)
	}
	return nil
}
