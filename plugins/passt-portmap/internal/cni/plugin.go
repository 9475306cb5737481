// Package cni is passt-portmap's CNI front end: it parses a CNI call's
// configuration and environment, calls the runtime-neutral core
// (pkg/attach), and maps the outcome onto the CNI error codes and result.
package cni

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	ppversion "github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/version"
)

// SupportedVersions are the CNI versions the plugin speaks: every one
// whose result can be empty (0.1.0 and 0.2.0 need an IP address in every
// result, which a plugin alone in its list has none of). STATUS and GC
// exist from 1.1.0 on; skel refuses them for older configurations.
var SupportedVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// About names the plugin and its version (skel prints it when the plugin
// runs without CNI_COMMAND).
func About() string {
	return "CNI plugin passt-portmap " + ppversion.Current().String()
}

// Main runs the CNI verbs as skel dispatches them, and exits.
func Main(stdout, stderr io.Writer) {
	if os.Getenv("CNI_COMMAND") == "VERSION" {
		answered, err := versionReply(os.Stdin, stdout, SupportedVersions)
		if err != nil {
			fmt.Fprintln(stderr, "passt-portmap:", err)
			os.Exit(1)
		}
		if answered {
			return
		}
	}
	p := &Plugin{Stdout: stdout, Stderr: stderr}
	skel.PluginMainFuncs(p.Funcs(), SupportedVersions, About())
}

// Plugin runs the CNI verbs. It holds only where to write: every call
// parses its own configuration, and all lasting state is in the store.
type Plugin struct {
	Stdout io.Writer // the CNI result
	Stderr io.Writer // warnings, for the runtime's log
	// Client, when set, makes the control socket client for a socket and
	// PID file (tests hand ctltest's listen addresses to it).
	Client func(socket, pidFile string) *ctlclient.Client
	// StopAt is a test hook, nil in production (see attach.Core.Step).
	StopAt func(step string) error
}

// Funcs returns the verbs for skel.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

func (p *Plugin) core() *attach.Core {
	return &attach.Core{Client: p.Client, Step: p.StopAt, Warn: func(msg string) {
		if p.Stderr != nil {
			fmt.Fprintln(p.Stderr, "passt-portmap: "+msg)
		}
	}}
}

func envOf(args *skel.CmdArgs) Env {
	return Env{ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Args: args.Args}
}

// call is one CNI call as the core sees it.
type call struct {
	cfg  *Config
	key  attach.Key
	opts attach.Options
	maps []attach.Mapping
}

// parse reads a call's configuration. resolve expands an external
// forwarder's socket for the call: an error doing so is the call's.
func parse(args *skel.CmdArgs, resolve bool) (*call, error) {
	env := envOf(args)
	cfg, err := ParseConfig(args.StdinData, env)
	if err != nil {
		return nil, err
	}
	c := &call{cfg: cfg, key: attach.Key{Network: cfg.Network, ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns}}
	c.opts = cfg.Options
	c.opts.Managed, c.opts.Kubernetes = cfg.Managed, cfg.Kubernetes
	c.opts.Prior, c.opts.NoNetwork = prior(cfg.PrevResult), cfg.PrevResult != nil
	if resolve && !cfg.Managed {
		if c.opts.Socket, c.opts.PIDFile, err = resolveSocket(cfg, env); err != nil {
			return nil, err
		}
	}
	for _, m := range cfg.Mappings {
		c.maps = append(c.maps, m.mapping())
	}
	return c, nil
}

// prior is what a previous result says earlier plugins made: its
// interfaces (which are in the container's namespace) and the families
// of the addresses it gives the container; nil without one.
func prior(r types.Result) *attach.Prior {
	if r == nil {
		return nil
	}
	cur, err := current.NewResultFromResult(r)
	if err != nil {
		return nil
	}
	p := &attach.Prior{}
	for _, i := range cur.Interfaces {
		p.Interfaces = append(p.Interfaces, attach.PriorInterface{Name: i.Name, Sandbox: i.Sandbox != ""})
	}
	for _, ip := range cur.IPs {
		// An address of an interface outside the container (a host
		// veth's) is not the pod's.
		if ip.Interface != nil && (*ip.Interface < 0 || *ip.Interface >= len(cur.Interfaces) || cur.Interfaces[*ip.Interface].Sandbox == "") {
			continue
		}
		if ip.Address.IP.To4() != nil {
			p.IPv4 = true
		} else {
			p.IPv6 = true
		}
	}
	return p
}

// Add is CNI ADD: make the forwarder hold exactly this attachment's
// mappings, in one transaction, and record them as owned. The result is
// the previous result unchanged when chained, what a managed forwarder
// configured when it made the network, and otherwise empty, each in the
// requested version.
func (p *Plugin) Add(args *skel.CmdArgs) error { return cniErr(p.add(args)) }

func (p *Plugin) add(args *skel.CmdArgs) error {
	c, err := parse(args, true)
	if err != nil {
		return err
	}
	if err := p.refusePodmanReservation(c.cfg); err != nil {
		return err
	}
	res, err := p.core().Add(context.Background(), c.key, c.opts, c.maps)
	if err != nil {
		return err
	}
	var out types.Result
	switch {
	case c.cfg.PrevResult != nil:
		out = c.cfg.PrevResult
	case res.Network != nil:
		out = cniResult(res.Network)
	default:
		out = &current.Result{CNIVersion: current.ImplementedSpecVersion}
	}
	conv, err := out.GetAsVersion(c.cfg.CNIVersion)
	if err != nil {
		return cfgErr("cniVersion", "the result cannot be given in version %s: %w", c.cfg.CNIVersion, err)
	}
	return conv.PrintTo(p.Stdout)
}

// cniResult is the network a managed forwarder made, as a CNI result
// (CNIVersion current.ImplementedSpecVersion): its one interface, in the
// container's namespace, with the addresses and routes on it.
func cniResult(n *attach.Network) *current.Result {
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: n.Interface.Name, Mac: n.Interface.MAC, Mtu: n.Interface.MTU, Sandbox: n.Interface.Sandbox}},
		DNS:        types.DNS{Nameservers: n.DNS.Nameservers, Domain: n.DNS.Domain, Search: n.DNS.Search, Options: n.DNS.Options},
	}
	for _, r := range n.Routes {
		res.Routes = append(res.Routes, &types.Route{Dst: r.Dst, GW: r.Gateway, Priority: r.Priority})
	}
	for _, a := range n.Addresses {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: current.Int(0), Address: a.Prefix, Gateway: a.Gateway})
	}
	return res
}

// Del is CNI DEL: remove exactly what this attachment owns, then its
// record. Whatever is already gone (forwarder, socket, record, rules)
// counts as removed.
func (p *Plugin) Del(args *skel.CmdArgs) error { return cniErr(p.del(args)) }

// del goes by the record alone: the socket is not resolved (DEL may come
// without CNI_NETNS).
func (p *Plugin) del(args *skel.CmdArgs) error {
	c, err := parse(args, false)
	if err != nil {
		return err
	}
	return p.core().Del(context.Background(), c.key, c.opts, c.maps)
}

// Check is CNI CHECK: every owned rule is in the forwarder's live tables
// and, unless weak, listening; a managed forwarder runs; the configured
// mappings are all owned. It changes nothing.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	c, err := parse(args, false)
	if err != nil {
		return cniErr(err)
	}
	if !c.cfg.Managed {
		c.opts.Socket, c.opts.PIDFile, _ = resolveSocket(c.cfg, envOf(args))
	}
	return cniErr(p.core().Check(context.Background(), c.key, c.opts, c.maps))
}

// GC is CNI GC: release every attachment of this network that the
// runtime no longer lists in cni.dev/valid-attachments, as DEL would.
// Attachments of other networks are not looked at.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	c, err := parse(args, false)
	if err != nil {
		return cniErr(err)
	}
	if !c.cfg.HasValidAttachments {
		// Without the list every attachment would look stale.
		return cniErr(cfgErr("cni.dev/valid-attachments", "missing: GC needs the list of valid attachments (it may be empty)"))
	}
	var valid []attach.Key
	for _, a := range c.cfg.ValidAttachments {
		valid = append(valid, attach.Key{Network: c.cfg.Network, ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return cniErr(p.core().GC(context.Background(), c.cfg.Network, c.opts, valid))
}

// Status is CNI STATUS: can the plugin serve an ADD now? The data
// directory must be writable; a fixed socket must answer with a protocol
// version this plugin speaks; a managed forwarder's pasta must be present
// and new enough. A socket that depends on the container cannot be
// checked before there is one.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	c, err := parse(args, false)
	if err != nil {
		return cniErr(err)
	}
	if !c.cfg.Managed && !hasPlaceholders(c.cfg.Socket) {
		if c.opts.Socket, c.opts.PIDFile, err = resolveSocket(c.cfg, envOf(args)); err != nil {
			return cniErr(err)
		}
	}
	return cniErr(p.core().Status(context.Background(), c.opts))
}
