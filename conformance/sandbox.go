package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ContainerPort is the port the suite's server listens on inside every
// namespace it makes; mappings point at it.
const ContainerPort = 8080

// dialTimeout bounds one probe of a host port. Loopback answers or refuses
// at once; the bound only stops a silently dropping rule from hanging.
const dialTimeout = 2 * time.Second

// sandbox is one "container": a fresh network namespace with a TCP server
// inside that answers every connection with the sandbox's token, so a
// probe knows which namespace it reached.
type sandbox struct {
	ID    string // CNI_CONTAINERID
	Path  string // CNI_NETNS
	token string
	netns ns.NetNS
	ln    net.Listener
	s     *Suite
	hook  bool // the setup hook ran: teardown is due
	gone  bool // the namespace was removed
}

// randomID returns prefix and 8 random hex digits.
func randomID(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newSandbox makes the namespace, sets its loopback up, starts the server
// and runs the suite's setup hook (e.g. starting a forwarder for it).
func (s *Suite) newSandbox(ctx context.Context) (*sandbox, error) {
	n, err := testutils.NewNS()
	if err != nil {
		return nil, fmt.Errorf("new network namespace: %w", err)
	}
	sb := &sandbox{ID: randomID("cnf-"), Path: n.Path(), netns: n, s: s}
	sb.token = "cniconform " + sb.ID + "\n"
	err = n.Do(func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		// Both families: a plugin may deliver to the container's IPv4
		// or IPv6 address or to its loopback.
		sb.ln, err = net.Listen("tcp", ":"+strconv.Itoa(ContainerPort))
		return err
	})
	if err != nil {
		sb.close(ctx)
		return nil, fmt.Errorf("namespace %s: %w", sb.Path, err)
	}
	go sb.serve()
	if s.Hook != "" {
		sb.hook = true
		if err := s.runHook(ctx, "setup", sb); err != nil {
			sb.close(ctx)
			return nil, err
		}
	}
	return sb, nil
}

func (sb *sandbox) serve() {
	for {
		c, err := sb.ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(dialTimeout))
		_, _ = io.WriteString(c, sb.token)
		_ = c.Close()
	}
}

// removeNS removes the namespace's mount, as a runtime does when the
// container is gone; the server's socket keeps the kernel object alive.
func (sb *sandbox) removeNS() error {
	if sb.gone {
		return nil
	}
	sb.gone = true
	if err := sb.netns.Close(); err != nil {
		return fmt.Errorf("close %s: %w", sb.Path, err)
	}
	// Detached, as `ip netns del` does: a forwarder's open file of the
	// namespace must not make the removal fail.
	if err := unix.Unmount(sb.Path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", sb.Path, err)
	}
	if err := os.Remove(sb.Path); err != nil {
		return fmt.Errorf("remove %s: %w", sb.Path, err)
	}
	return nil
}

// close runs the teardown hook, stops the server and removes the namespace.
func (sb *sandbox) close(ctx context.Context) {
	if sb.hook {
		sb.hook = false
		_ = sb.s.runHook(ctx, "teardown", sb)
	}
	if sb.ln != nil {
		_ = sb.ln.Close()
	}
	_ = sb.removeNS()
}

// runHook runs the suite's hook command with the action and the
// sandbox's attachment in its environment.
func (s *Suite) runHook(ctx context.Context, action string, sb *sandbox) error {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.Hook)
	cmd.Env = append(os.Environ(),
		"CONFORM_ACTION="+action,
		"CNI_CONTAINERID="+sb.ID,
		"CNI_NETNS="+sb.Path,
		"CNI_IFNAME="+s.ifname(),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("hook %q %s for %s: %w: %s", s.Hook, action, sb.ID, err, clip(out))
	}
	return nil
}

// probe connects to addr and reports whether the sandbox's server
// answered, and otherwise what happened.
func (sb *sandbox) probe(ctx context.Context, addr string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, shortErr(err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, err := io.ReadAll(c)
	switch {
	case string(b) == sb.token:
		return true, "answered by the container's server"
	case len(b) > 0:
		return false, fmt.Sprintf("answered %q, not the container's server", clip(b))
	case err != nil:
		return false, "connected, then " + shortErr(err)
	default:
		return false, "connected, then closed without data"
	}
}

func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// freePort returns a TCP port that is free on 127.0.0.1 and ::1 now.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if l6, err := net.Listen("tcp", "[::1]:"+strconv.Itoa(p)); err == nil {
			_ = l6.Close()
			return p, nil
		}
	}
	return 0, errors.New("find a free port: none free on both 127.0.0.1 and ::1")
}

// hostPort joins a loopback address and a port.
func hostPort(ip string, port int) string {
	return net.JoinHostPort(strings.Trim(ip, "[]"), strconv.Itoa(port))
}
