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
	o := a.Options
	// A netavark network is the namespace's network: the plugin always
	// makes it with its own pasta, and refuses a namespace that another
	// network already configured.
	o.Managed = true
	return k, o, a.Mappings
}

// Setup adds the attachment. When that fails it deletes what the add
// left (a started pasta, a record): netavark tears down only the networks
// whose setup succeeded.
func (b CoreBackend) Setup(ctx context.Context, a Attachment) (Configured, error) {
	k, o, ms := b.call(a)
	res, err := b.Core.Add(ctx, k, o, ms)
	if err != nil {
		if derr := b.Core.Del(ctx, k, o, ms); derr != nil {
			return Configured{}, &undoError{Err: err, Undo: derr}
		}
		return Configured{}, err
	}
	if res.Network == nil {
		return Configured{}, errors.New("the managed forwarder's network could not be read back")
	}
	return configuredOf(res.Network), nil
}

// Teardown deletes the attachment; one already gone is success.
func (b CoreBackend) Teardown(ctx context.Context, a Attachment) error {
	k, o, ms := b.call(a)
	return b.Core.Del(ctx, k, o, ms)
}

// undoError is a failed setup whose undoing failed too. It unwraps to the
// setup's failure alone, which decides the outcome.
type undoError struct{ Err, Undo error }

func (e *undoError) Error() string {
	return e.Err.Error() + "; and undoing the setup failed: " + e.Undo.Error()
}
func (e *undoError) Unwrap() error { return e.Err }

// callError is a failure of one command for one container: What names
// them ("setup of container 18eccc6b0103 on network pp").
type callError struct {
	What string
	Err  error
}

func (e *callError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *callError) Unwrap() error { return e.Err }

// render puts a command's failure into the core's words, naming settings
// and mappings as the network's options and port_mappings do, with the
// exit status of its kind from the core's one table (netavark shows it as
// "exit code N", the number CNI's error code would be); what cannot be
// named exits 1.
func render(err error) (msg string, code int) {
	what := ""
	var ce *callError
	if errors.As(err, &ce) {
		what, err = ce.What+": ", ce.Err
	}
	d := attach.Describe(err, dialect{})
	msg = what + d.Error()
	var ue *undoError
	if errors.As(err, &ue) {
		msg += "; and undoing the setup failed: " + attach.Describe(ue.Undo, dialect{}).Error()
	}
	return msg, d.Kind.Code(exitUnnamed)
}

// exitUnnamed is the exit status of what cannot be named (CNI's 999 does
// not fit an exit status).
const exitUnnamed = 1

// dialect names the core's settings by the network's options
// ("network.options.timeout") and a mapping's fields by their place in
// port_mappings; a passt-portmap network always has its own pasta, so
// the settings that choose another forwarder (socket), a second network
// (allowChained) or a chained pod's side have no option here.
type dialect struct{}

func (dialect) Setting(s attach.Setting) string {
	if _, ok := optionOf(s.String()); !ok {
		return ""
	}
	return "network.options." + s.String()
}

// mappingFields are the JSON names of a mapping's fields.
var mappingFields = map[attach.Field]string{
	attach.FieldHostPort: "host_port", attach.FieldContainerPort: "container_port", attach.FieldProtocol: "protocol",
	attach.FieldHostIP: "host_ip", attach.FieldRange: "range",
}

func (dialect) Mapping(i int, f attach.Field) string {
	entry := fmt.Sprintf("port_mappings[%d]", i)
	if n, ok := mappingFields[f]; ok {
		return entry + "." + n
	}
	return entry
}

func (dialect) Mappings() string           { return "port_mappings" }
func (dialect) Locate(place string) string { return place }

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
