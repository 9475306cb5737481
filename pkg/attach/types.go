package attach

import (
	"net/netip"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// DefaultTimeout bounds each blocking step when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Key names one attachment: a container's interface on a network.
type Key struct {
	Network     string
	ContainerID string
	IfName      string
	// Netns is the path of the container's network namespace. A managed
	// forwarder needs it; DEL and GC work without it.
	Netns string
}

func (k Key) String() string { return k.storeKey().String() }

// Mapping is one published port, or a range of them, for one or more
// protocols.
type Mapping struct {
	// HostIP is the host address to listen on; "" listens on every
	// address (dual-stack where the forwarder can).
	HostIP        string
	HostPort      int
	ContainerPort int
	// Range is the number of consecutive ports from HostPort and
	// ContainerPort; 0 and 1 mean one.
	Range int
	// Protocols are "tcp" and "udp", in any case; none means tcp.
	Protocols []string
}

// Options say which forwarder to use and how, and what every rule gets.
// A front end makes them from its input with Input.Options, which reads
// every setting and fills in the core's defaults (Verify true, Timeout
// DefaultTimeout), then sets what it decides itself: the mode (Managed,
// Socket, PIDFile), Prior, Kubernetes, NoNetwork. Every entry point of
// the core checks them again (Check).
type Options struct {
	// DataDir holds records/ (ownership records) and forwarders/ (the
	// managed forwarders' directories); "" is DefaultDataDir, which
	// depends on who runs the plugin.
	DataDir string
	// Timeout bounds each blocking step; zero means DefaultTimeout.
	Timeout time.Duration

	// Managed makes the core start (or reuse) a pasta for the attachment
	// itself. Otherwise Socket is the control socket of a forwarder
	// started elsewhere and PIDFile, if known, its PID file; Socket may be
	// empty for DEL and CHECK when the caller cannot say it in this call.
	Managed bool
	Socket  string
	PIDFile string

	// Pasta is the managed forwarder's binary ("" = pasta in PATH) and
	// PastaArgs extra arguments (see forwarder.Config).
	Pasta     string
	PastaArgs []string
	// MapHostLoopback are the container's addresses that reach the
	// host's loopback, and LoopbackToHost forwards the container's
	// loopback ports to the host's; both closed by default (see
	// forwarder.Config).
	MapHostLoopback []netip.Addr
	LoopbackToHost  bool
	// Prior is what earlier plugins of the runtime's list made (CNI's
	// previous result), nil when none did. With an interface in the
	// container's namespace, a managed attachment is chained: its pasta
	// joins on a side interface shaped by Side and forwards the host
	// ports only, the earlier plugin's network untouched (see modeOf).
	// AllowChained asks instead for pasta's own network as a second one
	// beside it, as before chained mode existed.
	Prior        *Prior
	Side         SideOptions
	AllowChained bool
	// Kubernetes says the runtime is a Kubernetes node's (a CRI runtime,
	// containerd or CRI-O), whose pods need addresses of their own: a
	// managed attachment alone is refused there.
	Kubernetes bool

	// Weak tolerates bind failures (wire.FlagWeak).
	Weak bool
	// TargetAddress is the container-side address to forward to; the
	// invalid Addr means the container's default.
	TargetAddress netip.Addr
	// BindInterface binds the listeners to an interface ("" = any).
	BindInterface string
	// Verify checks listeners after each update.
	Verify bool
	// NoNetwork skips reading back a managed forwarder's network for the
	// Result (a front end that passes on another plugin's result).
	NoNetwork bool
}

// Result is what ADD did.
type Result struct {
	Socket  string         // the forwarder's control socket
	PIDFile string         // its PID file, if known
	Rules   []wire.PifRule // the rules the attachment owns now
	// Network is what a managed forwarder configured in the namespace;
	// nil for an external forwarder.
	Network *Network
}

// Network is the interface, addresses, routes and DNS a managed pasta
// set up in the container's namespace.
type Network = forwarder.Network

// Core runs the lifecycle. It holds only hooks of the calling process:
// all lasting state is in the data directory. The zero Core warns nowhere
// and makes default clients.
type Core struct {
	// Warn receives warnings (for the runtime's log); nil drops them.
	Warn func(msg string)
	// Client makes the control socket client for a socket and PID file
	// (tests hand ctltest's listen addresses to it); nil makes a default
	// ctlclient.Client.
	Client func(socket, pidFile string) *ctlclient.Client
	// Step is a test hook, nil in production. When set, it is called at
	// each named step of Add and Del (and of the updates they send, see
	// ctlclient.Client.Step); an error it returns ends the call there, as
	// if the process had been killed at that point (the record lock is
	// released either way).
	Step func(name string) error
}
