package netavark

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/version"
)

// CoreBackend carries out setup and teardown with the runtime-neutral
// core: setup is an Add with a managed forwarder, teardown a Del.
type CoreBackend struct {
	Core *attach.Core
}

func (b CoreBackend) call(a Attachment) (attach.Key, attach.Options, []attach.Mapping) {
	k := attach.Key{Network: a.Network, ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns}
	o := attach.Options{
		DataDir: a.Options.DataDir, Timeout: a.Options.Timeout,
		// A netavark network is the namespace's network: the plugin
		// always makes it with its own pasta, and refuses a namespace
		// that another network already configured.
		Managed: true, Pasta: a.Options.Pasta, PastaArgs: a.Options.PastaArgs,
		Weak: a.Options.Weak, TargetAddress: a.Options.Target, BindInterface: a.Options.BindInterface,
		Verify:          a.Options.Verify,
		MapHostLoopback: a.Options.MapHostLoopback, LoopbackToHost: a.Options.LoopbackToHost,
	}
	ms := make([]attach.Mapping, 0, len(a.Mappings))
	for _, m := range a.Mappings {
		cm := attach.Mapping{HostPort: int(m.HostPort), ContainerPort: int(m.ContainerPort), Range: int(m.Range), Protocols: m.Protocols}
		if m.HostIP.IsValid() {
			cm.HostIP = m.HostIP.String()
		}
		ms = append(ms, cm)
	}
	return k, o, ms
}

// Setup adds the attachment. When that fails it deletes what the add
// left (a started pasta, a record): netavark tears down only the networks
// whose setup succeeded.
func (b CoreBackend) Setup(ctx context.Context, a Attachment) (Configured, error) {
	k, o, ms := b.call(a)
	res, err := b.Core.Add(ctx, k, o, ms)
	if err != nil {
		if derr := b.Core.Del(ctx, k, o, ms); derr != nil {
			err = errors.Join(err, &cleanupError{Err: derr})
		}
		return Configured{}, outcome(err)
	}
	if res.Network == nil {
		return Configured{}, errors.New("the managed forwarder's network could not be read back")
	}
	return configuredOf(res.Network), nil
}

// Teardown deletes the attachment; one already gone is success.
func (b CoreBackend) Teardown(ctx context.Context, a Attachment) error {
	k, o, ms := b.call(a)
	return outcome(b.Core.Del(ctx, k, o, ms))
}

// cleanupError is a failure to undo a failed setup.
type cleanupError struct{ Err error }

func (e *cleanupError) Error() string { return "and undoing the setup failed: " + e.Err.Error() }
func (e *cleanupError) Unwrap() error { return e.Err }

// exitCodes are the exit statuses of the core's kinds of failure: the
// codes of the CNI front end's table, so that a user reads the same
// number ("exit code 101") from either runtime. What cannot be named is
// 1 (CNI's 999 does not fit an exit status).
var exitCodes = map[attach.Kind]int{
	attach.KindBadConfig:    CodeBadInput,
	attach.KindUnreachable:  11,
	attach.KindNotAvailable: 50,
	attach.KindSafeFail:     100,
	attach.KindSocketFail:   101,
	attach.KindRollbackFail: 102,
	attach.KindMismatch:     103,
	attach.KindCheckFailed:  104,
	attach.KindIO:           5,
}

// outcomeError is a core failure in the core's words, with its exit
// status.
type outcomeError struct{ d *attach.Error }

func (e *outcomeError) Error() string { return e.d.Error() }
func (e *outcomeError) Unwrap() error { return e.d }

func (e *outcomeError) ExitCode() int {
	if c, ok := exitCodes[e.d.Kind]; ok {
		return c
	}
	return 1
}

func outcome(err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return err
	}
	return &outcomeError{d: attach.Describe(err, dialect{})}
}

// dialect names the core's settings by the network's options: a
// passt-portmap network always has its own pasta, so the CNI keys that
// choose another forwarder (socket) or a second network (allowChained)
// have no option here.
type dialect struct{}

func (dialect) Key(s attach.Setting) string {
	switch s {
	case attach.SettingSocket, attach.SettingAllowChained:
		return ""
	}
	return s.String()
}
func (dialect) Noun() string     { return "network option" }
func (dialect) Mappings() string { return "port_mappings" }

// configuredOf is the core's account of the managed network, for the
// StatusBlock.
func configuredOf(n *attach.Network) Configured {
	c := Configured{IfName: n.Interface.Name, MAC: n.Interface.MAC, Search: n.DNS.Search}
	for _, ad := range n.Addresses {
		ip, ok := netip.AddrFromSlice(ad.Prefix.IP)
		if !ok {
			continue
		}
		ones, _ := ad.Prefix.Mask.Size()
		c.Addrs = append(c.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
		if gw, ok := netip.AddrFromSlice(ad.Gateway); ok {
			if gw = gw.Unmap(); gw.Is4() {
				c.Gateway4 = gw
			} else {
				c.Gateway6 = gw
			}
		}
	}
	for _, s := range n.DNS.Nameservers {
		if a, err := netip.ParseAddr(s); err == nil {
			c.DNS = append(c.DNS, a)
		}
	}
	return c
}

// processRuntime learns about the Podman that runs this process from
// /proc and Podman's configuration files.
type processRuntime struct{}

func (processRuntime) ForwardsPorts() bool { return podman.RootlessNetavark(procnet.Root, os.Getpid()) }

func (processRuntime) PortReservation() error {
	return podman.CheckReservation(procnet.Root, os.Getpid(), "/", os.Getenv)
}

// Main runs the plugin API's command in args (without the program's
// name) for a process: stdin, stdout and stderr, the core behind it. It
// returns the exit status.
func Main(args []string) int {
	p := &Plugin{
		Backend: CoreBackend{Core: &attach.Core{Warn: func(msg string) { fmt.Fprintln(os.Stderr, "passt-portmap:", msg) }}},
		Runtime: processRuntime{},
		Version: version.Current().String(),
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
	}
	return p.Run(context.Background(), args, os.Stdin)
}
