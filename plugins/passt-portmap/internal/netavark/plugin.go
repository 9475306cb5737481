package netavark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/podman"
)

// Attachment is one container on one network, as setup and teardown ask
// for it.
type Attachment struct {
	Network     string // the network's name
	ContainerID string
	IfName      string // the interface in the namespace (network_options.interface_name)
	Netns       string // the namespace's path (the command's argument)
	// Options are the network's options, read and checked by the core.
	Options attach.Options
	// Mappings are port_mappings, decoded; setup has the core check them.
	Mappings []attach.Mapping
}

// Backend does what setup and teardown ask for.
type Backend interface {
	// Setup starts the managed pasta for the namespace (or finds the one
	// running for the attachment), makes it forward exactly a.Mappings
	// and returns what it configured. When it fails it leaves nothing of
	// the attachment behind: netavark does not tear down a network whose
	// setup failed.
	Setup(ctx context.Context, a Attachment) (Configured, error)
	// Teardown removes the attachment's rules and stops its pasta; an
	// attachment already gone is success.
	Teardown(ctx context.Context, a Attachment) error
}

// Runtime is what the plugin learns of the Podman that runs it.
type Runtime interface {
	// ForwardsPorts reports whether the runtime forwards the published
	// host ports itself: rootless Podman does, with rootlessport, from
	// the host's network namespace straight to the container's address,
	// while netavark and the plugin run in its rootless network
	// namespace, where nothing reaches a listener of the forwarder.
	ForwardsPorts() bool
	// PortReservation is podman.CheckReservation's answer: a
	// *podman.ReservationError when a rootful Podman holds the published
	// host ports itself, so that the forwarder cannot bind them.
	PortReservation() error
}

// Plugin runs the plugin API's commands.
type Plugin struct {
	Backend Backend
	// Runtime, when set, is asked before a setup with port mappings.
	Runtime Runtime
	Version string    // the plugin's version, for info
	Stdout  io.Writer // the answer, or {"error": ...}: nothing else
	Stderr  io.Writer // logs
}

// IsCommand reports whether arg is one of the plugin API's commands.
func IsCommand(arg string) bool {
	switch arg {
	case "create", "setup", "teardown", "info":
		return true
	}
	return false
}

// Run runs the command in args (args[0] is the command, without the
// program's name) with stdin as its input and returns the exit status.
func (p *Plugin) Run(ctx context.Context, args []string, stdin io.Reader) int {
	out, err := p.run(ctx, args, stdin)
	if err != nil {
		return p.fail(err)
	}
	if out == nil {
		return 0 // teardown answers nothing
	}
	b, err := json.Marshal(out)
	if err != nil {
		return p.fail(fmt.Errorf("encode the answer: %w", err))
	}
	if _, err := p.Stdout.Write(append(b, '\n')); err != nil {
		fmt.Fprintf(p.Stderr, "passt-portmap: write the answer: %v\n", err)
		return exitUnnamed
	}
	return 0
}

func (p *Plugin) run(ctx context.Context, args []string, stdin io.Reader) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("no command (want create, setup NETNS, teardown NETNS or info)")
	}
	switch cmd := args[0]; cmd {
	case "info":
		return Info{Version: p.Version, APIVersion: APIVersion}, nil
	case "create":
		b, err := readAll(stdin)
		if err != nil {
			return nil, err
		}
		return p.create(b)
	case "setup", "teardown":
		if len(args) != 2 || args[1] == "" {
			return nil, fmt.Errorf("%s: want one argument, the path of the container's network namespace", cmd)
		}
		b, err := readAll(stdin)
		if err != nil {
			return nil, err
		}
		if cmd == "setup" {
			return p.setup(ctx, args[1], b)
		}
		return nil, p.teardown(ctx, args[1], b)
	default:
		return nil, fmt.Errorf("unknown command %q (want create, setup NETNS, teardown NETNS or info)", cmd)
	}
}

// maxInput bounds what is read from stdin: a network with every port of
// a machine mapped one by one is about 6 MB of JSON.
const maxInput = 64 << 20

func readAll(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("stdin holds more than %d bytes", maxInput)
	}
	return b, nil
}

// create validates a new network's configuration and hands it back
// unchanged: the options are kept as the user wrote them, so that a later
// version's defaults apply to them.
func (p *Plugin) create(b []byte) (any, error) {
	n, members, err := DecodeNetwork(b)
	if err != nil {
		return nil, err
	}
	if _, err := ParseOptions(n.Options); err != nil {
		return nil, err
	}
	if n.Internal {
		// pasta always gives the namespace the host's outbound access:
		// an internal network would not be one.
		return nil, fieldErr("internal", "a passt-portmap network cannot be internal: pasta gives the container outbound access through the host")
	}
	if len(n.Subnets) > 0 {
		p.logf("network %s: subnets are not used: pasta gives the container the host's addresses", n.Name)
	}
	return members, nil
}

// attachment decodes the input of setup or teardown for the namespace
// netns, and has the core read the network's options.
func attachment(netns string, e *Exec) (Attachment, error) {
	a := Attachment{Network: e.Network.Name, ContainerID: e.ContainerID, IfName: e.NetworkOptions.InterfaceName, Netns: netns,
		Mappings: mappings(e.PortMappings)}
	var err error
	a.Options, err = ParseOptions(e.Network.Options)
	return a, err
}

// failed names the command and the container of a failure.
func failed(cmd string, a Attachment, err error) error {
	return &callError{What: fmt.Sprintf("%s of container %.12s on network %s", cmd, a.ContainerID, a.Network), Err: err}
}

func (p *Plugin) setup(ctx context.Context, netns string, b []byte) (any, error) {
	e, err := DecodeExec(b)
	if err != nil {
		return nil, err
	}
	a, err := attachment(netns, e)
	if err != nil {
		return nil, err
	}
	if len(e.NetworkOptions.StaticIPs) > 0 || e.NetworkOptions.StaticMAC != nil {
		// netavark checks nothing against them; say so where the
		// runtime logs it rather than pretend.
		p.logf("container %.12s on network %s: static addresses and MAC (--ip, --mac-address) are not used: pasta gives the container the host's addresses", a.ContainerID, a.Network)
	}
	// The mappings are checked whatever becomes of them: rootless Podman
	// forwards them itself, but a bad one is still refused.
	if err := attach.CheckMappings(a.Mappings); err != nil {
		return nil, failed("setup", a, err)
	}
	if a.Mappings, err = p.portsToForward(a.Mappings); err != nil {
		return nil, failed("setup", a, err)
	}
	c, err := p.Backend.Setup(ctx, a)
	if err != nil {
		return nil, failed("setup", a, err)
	}
	if c.IfName == "" {
		c.IfName = a.IfName
	}
	return StatusBlockOf(c), nil
}

// portsToForward returns the mappings the forwarder has to bind: none
// when the runtime forwards them itself (rootless Podman), and all of
// them otherwise, unless a rootful Podman holds them (refused with its
// *podman.ReservationError, which the core describes as a bad
// configuration naming the setting: the forwarder's ports would not
// listen). A Podman configuration that cannot be read is logged, and the
// listener check names the holder of a port that does not listen.
func (p *Plugin) portsToForward(ms []attach.Mapping) ([]attach.Mapping, error) {
	if len(ms) == 0 || p.Runtime == nil {
		return ms, nil
	}
	if p.Runtime.ForwardsPorts() {
		return nil, nil
	}
	refuse, warn := podman.Verdict(p.Runtime.PortReservation())
	if warn != nil {
		p.logf("%v", warn)
	}
	if refuse != nil {
		return nil, refuse
	}
	return ms, nil
}

// teardown removes what setup recorded. The mappings do not matter for
// that: mappings that setup refused, or that cannot even be decoded, do
// not keep teardown from cleaning up.
func (p *Plugin) teardown(ctx context.Context, netns string, b []byte) error {
	e, err := decodeExec(b, false)
	if err != nil {
		return err
	}
	a, err := attachment(netns, e)
	if err != nil {
		return err
	}
	if err := p.Backend.Teardown(ctx, a); err != nil {
		return failed("teardown", a, err)
	}
	return nil
}

func (p *Plugin) logf(format string, a ...any) {
	if p.Stderr != nil {
		fmt.Fprintf(p.Stderr, "passt-portmap: "+format+"\n", a...)
	}
}

// fail writes err as netavark's error JSON (render: the core's words,
// the exit status of its kind), logs it, and returns the exit status.
func (p *Plugin) fail(err error) int {
	msg, code := render(err)
	b, merr := json.Marshal(jsonError{Error: msg})
	if merr != nil {
		b = []byte(`{"error":"passt-portmap: an error that cannot be encoded"}`)
	}
	p.logf("%s", msg)
	if _, werr := p.Stdout.Write(b); werr != nil {
		p.logf("write the error: %v", werr)
	}
	return code
}
