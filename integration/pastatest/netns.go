package pastatest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
)

// NetNS is a named network namespace made with `ip netns add`, the way a
// container runtime makes one: it outlives any process and is reachable by
// its path.
type NetNS struct {
	Name string // e.g. "pt-1a2b3c4d"
	Path string // /run/netns/NAME

	deleted bool // by Delete, before the test's end
}

// NewNetNS makes a network namespace with a unique name, sets its loopback
// up and deletes it when the test ends.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	requireRoot(t)
	name := uniqueName("pt-")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("pastatest: ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	n := &NetNS{Name: name, Path: filepath.Join("/run/netns", name)}
	t.Cleanup(func() {
		if n.deleted {
			return
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("pastatest: ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("pastatest: ip -n %s link set lo up: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return n
}

// Delete removes the namespace now, as a runtime does when a sandbox
// goes away; a pasta attached to it then exits.
func (n *NetNS) Delete(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("pastatest: ip netns del %s: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	n.deleted = true
}

// Do runs fn on an OS thread that is inside the namespace. Sockets fn
// creates belong to the namespace for their whole life and may be used
// from any goroutine afterwards.
func (n *NetNS) Do(fn func() error) error {
	target, err := ns.GetNS(n.Path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.Path, err)
	}
	defer target.Close()
	return target.Do(func(ns.NetNS) error { return fn() })
}

// IP runs `ip -n NAME ARGS...` and returns its output; it fails the test
// on error.
func (n *NetNS) IP(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"-n", n.Name}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("pastatest: ip %s: %v: %s", strings.Join(full, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out)
}
