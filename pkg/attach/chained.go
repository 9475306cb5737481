package attach

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/sidenet"
	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// Prior is what earlier plugins of the runtime's list made for this
// attachment (CNI's previous result).
type Prior struct {
	Interfaces []PriorInterface
	// IPv4 and IPv6 say whether the earlier plugins gave the container
	// an address of that family.
	IPv4, IPv6 bool
}

// PriorInterface is an interface an earlier plugin made; Sandbox says it
// is in the container's namespace (not the host side of a veth).
type PriorInterface struct {
	Name    string
	Sandbox bool
}

// sandboxed returns the first interface in the container's namespace.
func (p *Prior) sandboxed() (string, bool) {
	for _, i := range p.Interfaces {
		if i.Sandbox {
			return i.Name, true
		}
	}
	return "", false
}

// SideOptions shape a chained attachment's side interface; zero values
// are the defaults of package sidenet.
type SideOptions struct {
	IfName   string       // the tap's name ("pasta0")
	Table    int          // the routing table of its replies (20563)
	Network4 netip.Prefix // IPv4 side network (169.254.100.0/30)
	Network6 netip.Prefix // IPv6 side network (fd41:e00e:44f8::/64)
}

// mode is how a call serves its attachment.
type mode int

const (
	// modeAttached writes into a forwarder someone else started.
	modeAttached mode = iota
	// modeManaged starts a pasta that makes the container's network.
	modeManaged
	// modeSecond starts such a pasta beside an earlier plugin's network,
	// as a second one (allowChained).
	modeSecond
	// modeChained gives a pod whose network an earlier plugin made its
	// host ports through a pasta on a side interface, that network
	// untouched.
	modeChained
)

// modeOf is the chained policy, in one place:
//
//   - a configured socket: attached, whatever came before;
//   - an earlier plugin made an interface in the container's namespace:
//     chained, unless allowChained asks for pasta's network as a second
//     one (what allowChained meant before chained mode existed);
//   - an earlier plugin named only interfaces outside the namespace:
//     refused, it is not a pod network this plugin can join;
//   - alone under Kubernetes (a CRI runtime): refused, since the pod IP
//     would be pasta's copy of the node's address, which kubelet's probes
//     and Service endpoints would then reach instead of the pod;
//   - alone otherwise: managed.
func modeOf(o *Options) (mode, error) {
	if !o.Managed {
		return modeAttached, nil
	}
	if p := o.Prior; p != nil && len(p.Interfaces) > 0 {
		if o.AllowChained {
			return modeSecond, nil
		}
		if _, ok := p.sandboxed(); !ok {
			return 0, &Error{Kind: KindBadConfig, Msg: "passt-portmap cannot join this pod's network",
				Details: fmt.Sprintf("the previous result names interface %q but none in the container's namespace (no \"sandbox\"): chained mode needs the interface of the pod network; list passt-portmap after the plugin that makes it", p.Interfaces[0].Name)}
		}
		return modeChained, nil
	}
	if o.Kubernetes {
		return 0, &Error{Kind: KindBadConfig, Msg: "passt-portmap alone cannot be a Kubernetes pod network",
			Details: `the pod IP would be pasta's copy of the node's address, so kubelet's probes and Service endpoints would reach the node, not the pod; ` +
				`chain passt-portmap after the pod network instead, in place of portmap: "plugins": [{"type": "bridge", ..., "ipam": {"type": "host-local", ...}}, {"type": "passt-portmap", "capabilities": {"portMappings": true}}]`}
	}
	return modeManaged, nil
}

// checkChainedOptions refuses the keys that have no meaning for a chained
// attachment, naming each: its pasta opens no path to the node's
// loopback, forwards to the side interface, and takes only logging
// options.
func checkChainedOptions(o *Options) error {
	const why = "not for a chained attachment (after the pod network)"
	switch {
	case o.TargetAddress.IsValid():
		return settingErr(SettingTargetAddress, "%s: its rules forward to the side interface's addresses", why)
	case len(o.MapHostLoopback) > 0:
		return settingErr(SettingMapHostLoopback, "%s: its pasta opens no path to the node", why)
	case o.LoopbackToHost:
		return settingErr(SettingLoopbackToHost, "%s: its pasta opens no path to the node", why)
	}
	return argsErr(forwarder.CheckChainedArgs(o.PastaArgs))
}

// planSide is the side a chained ADD sets up in the namespace netns: an
// IPv4 side always, an IPv6 one when the pod has IPv6.
func planSide(o *Options, netns string) (sidenet.Side, error) {
	so := o.Side
	ifName, table, net4, net6 := so.IfName, so.Table, so.Network4, so.Network6
	if ifName == "" {
		ifName = sidenet.DefaultIfName
	}
	if table == 0 {
		table = sidenet.DefaultTable
	}
	if !net4.IsValid() {
		net4 = sidenet.DefaultNetwork4
	}
	if !net6.IsValid() {
		net6 = sidenet.DefaultNetwork6
	}
	if o.Prior == nil || !o.Prior.IPv6 {
		net6 = netip.Prefix{}
	}
	s, err := sidenet.Plan(netns, ifName, table, net4, net6)
	if err != nil {
		return sidenet.Side{}, &ConfigError{Setting: SettingSideNetwork, Err: err}
	}
	return s, nil
}

// sideRecord is the record of side s.
func sideRecord(s sidenet.Side) *store.Side {
	return &store.Side{NetnsInode: s.Inode, IfName: s.IfName, Table: s.Table, Priority: s.Priority,
		Addr4: s.Addr4, Gateway4: s.Gateway4, Addr6: s.Addr6, Gateway6: s.Gateway6}
}

// recordedSide is the side rec records, checked: a record can make the
// plugin remove rules in the namespace it names, so what it names must
// be a side this plugin could have set up.
func recordedSide(rec *store.Record) (sidenet.Side, error) {
	r := rec.Side
	s := sidenet.Side{NetNS: rec.Netns, Inode: r.NetnsInode, IfName: r.IfName, Table: r.Table, Priority: r.Priority,
		Addr4: r.Addr4, Gateway4: r.Gateway4, Addr6: r.Addr6, Gateway6: r.Gateway6}
	err := s.Validate()
	if err == nil && (s.NetNS == "" || !filepath.IsAbs(s.NetNS)) {
		err = fmt.Errorf("namespace path %q is not absolute", s.NetNS)
	}
	for _, p := range []netip.Prefix{s.Addr4, s.Addr6} {
		if err == nil && p.IsValid() {
			err = sidenet.CheckNetwork(p.Masked())
		}
	}
	if err != nil {
		return sidenet.Side{}, &recordSideError{Key: rec.Key(), Err: err}
	}
	return s, nil
}

// recordSideError is a record whose side is not one the plugin sets up.
type recordSideError struct {
	Key store.Key
	Err error
}

func (e *recordSideError) Error() string {
	return fmt.Sprintf("the record of %s names a side interface the plugin would not set up (%v); nothing was removed in the pod's namespace: remove that attachment's rules there by hand, then the record", e.Key, e.Err)
}
func (e *recordSideError) Unwrap() error { return e.Err }

// sameSide reports whether the recorded side is the planned one (the
// namespace's inode aside).
func sameSide(rec *store.Side, s sidenet.Side) bool {
	if rec == nil {
		return false
	}
	r := *sideRecord(s)
	r.NetnsInode = rec.NetnsInode
	return *rec == r
}

// sideError maps a side that clashes with the pod's network onto the
// settings that choose it.
func sideError(err error) error {
	var ce *sidenet.ClashError
	if errors.As(err, &ce) {
		var settings []Setting
		for _, p := range ce.Parts() {
			settings = append(settings, [...]Setting{SettingSideInterface, SettingSideTable, SettingSideNetwork}[p])
		}
		if len(settings) == 0 {
			return err
		}
		return &ConfigError{Setting: settings[0], Also: settings[1:], Err: fmt.Errorf("%w; set it to another value", err)}
	}
	var oe *forwarder.OutboundError
	if errors.As(err, &oe) {
		return &ConfigError{Setting: SettingSideNetwork, Err: err}
	}
	return err
}

// forwarderFailure is the error of step op of the managed forwarder in
// dir: a side that clashes names its settings (sideError), anything else
// the forwarder.
func forwarderFailure(op, dir string, err error) error {
	if se := sideError(err); se != err {
		return se
	}
	return &forwarderError{Op: op, Dir: dir, Err: err}
}

// chainedForwarder starts (or reuses) the chained pasta of an ADD and
// sets up its side interface. Like a managed forwarder it is recorded
// before it starts, with its side, so that DEL and GC find both even when
// this ADD goes no further. A forwarder this attachment ran before in
// another mode, or with another side, is stopped first, its side removed.
func (c *Core) chainedForwarder(ctx context.Context, o *Options, k Key, lock *store.Locked, rec *store.Record, s sidenet.Side) (*fwd, *store.Record, error) {
	dir := forwarderDir(o.DataDir, k.storeKey())
	if err := ensureForwarders(o); err != nil {
		return nil, nil, err
	}
	fs := forwarder.Side{IfName: s.IfName, Addr4: s.Addr4, Gateway4: s.Gateway4, Addr6: s.Addr6, Gateway6: s.Gateway6}
	f := &fwd{managed: true, cfg: forwarder.Config{Pasta: o.Pasta, Args: o.PastaArgs, NetNS: k.Netns, Dir: dir, Timeout: o.timeout(), Side: &fs}}
	same := rec != nil && rec.Managed && rec.Dir == dir && rec.Netns == k.Netns && sameSide(rec.Side, s)
	if rec != nil && rec.Managed && !same {
		if err := c.leaveManaged(ctx, o, rec); err != nil {
			return nil, nil, err
		}
	}
	if _, running, _ := forwarder.Running(dir); !running || !same {
		if err := sidenet.Free(s, same); err != nil {
			return nil, nil, forwarderFailure("inspect the pod's namespace for", dir, err)
		}
	}
	ino, err := sidenet.Inode(k.Netns)
	if err != nil {
		return nil, nil, &forwarderError{Op: "find the pod's namespace for", Dir: dir, Err: err}
	}
	s.Inode = ino
	f.side = sideRecord(s)
	if !same {
		if rec, err = c.recordOwn(ctx, o, k, lock, rec, f); err != nil {
			return nil, nil, err
		}
	}
	inst, err := c.ensureOwn(ctx, o, f)
	if err != nil {
		return nil, nil, err
	}
	if err := sidenet.Setup(s); err != nil {
		return nil, nil, forwarderFailure("set up the side interface of", dir, err)
	}
	f.socket, f.pidFile = inst.Socket, inst.PIDFile
	return f, rec, nil
}

// releaseManaged stops a managed forwarder a record names, after
// removing its side (a chained one's) from the pod's namespace.
func (c *Core) releaseManaged(ctx context.Context, o *Options, rec *store.Record) error {
	if err := checkRecord(o, rec); err != nil {
		return err
	}
	if rec.Side != nil {
		s, err := recordedSide(rec)
		if err != nil {
			return err
		}
		if err := sidenet.Teardown(s); err != nil {
			return &forwarderError{Op: "remove the side interface's routing of", Dir: rec.Dir, Err: err}
		}
	}
	return stopManaged(ctx, o, rec.Dir)
}

// leaveManaged releases the managed forwarder rec names, for an ADD that
// starts another in its place, and forgets it in rec: its rules went with
// it.
func (c *Core) leaveManaged(ctx context.Context, o *Options, rec *store.Record) error {
	if err := c.releaseManaged(ctx, o, rec); err != nil {
		return err
	}
	rec.Managed, rec.Side, rec.Rules, rec.Pending = false, nil, nil, nil
	return nil
}

// checkSide adds to reasons what of a chained attachment's side is
// missing.
func checkSide(rec *store.Record, reasons []string) ([]string, error) {
	if rec.Side == nil {
		return reasons, nil
	}
	s, err := recordedSide(rec)
	if err != nil {
		return nil, err
	}
	r, err := sidenet.Check(s)
	if err != nil {
		return nil, fmt.Errorf("check the side interface in %s: %w", s.NetNS, err)
	}
	return append(reasons, r...), nil
}

// chainedTargets sets the compiler's targets to the side's addresses:
// each family's rules forward to the pod's side address of that family.
func (c *compiler) chainedTargets(addr4, addr6 netip.Prefix) {
	c.opts.Target, c.opts.Target6 = netip.Addr{}, netip.Addr{}
	switch {
	case addr4.IsValid() && addr6.IsValid():
		c.opts.Target, c.opts.Target6 = addr4.Addr(), addr6.Addr()
	case addr4.IsValid():
		c.opts.Target = addr4.Addr()
	case addr6.IsValid():
		c.opts.Target = addr6.Addr()
	}
}

// familyNote explains, for a chained attachment (side set), a mapping of
// a family the side does not have.
func familyNote(err error, side *sidenet.Side) error {
	if side == nil || !errors.Is(err, translate.ErrFamily) || side.Addr6.IsValid() {
		return err
	}
	return &annotated{Err: err, Note: "the pod has no IPv6 address in the previous result, so its side interface has IPv4 only"}
}
