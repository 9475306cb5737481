package ctlclient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/procnet"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// forwarder is the process found behind the control socket.
type forwarder struct {
	pid int // 0 when not found
	// fds is its fd table, read as questions need it (see
	// procnet.FDScan); nil when /proc/PID/fd is unreadable.
	fds *procnet.FDScan
	uid uint32 // SO_PEERCRED uid
	// foreign are inodes of listeners seen before the fd table was last
	// read and not in it: not the forwarder's (it only makes new sockets).
	foreign map[uint64]bool
	why     string // why pid is 0 or fds nil, for diagnostics
}

// readPID reads the forwarder's PID file.
func (c *Client) readPID() (int, error) {
	if c.ReadPID != nil {
		return c.ReadPID()
	}
	return procnet.ReadPIDFile(c.PIDFile)
}

// findForwarder finds the process holding the listening control socket
// that session s reached: the one found last time, the peer (a forwarder
// that did not daemonize), or the PID file's process, each checked in its
// own network namespace (/proc/PID/net/unix: the forwarder may run in
// another namespace than the caller, where the caller's /proc/net/unix
// does not show its socket); else the holder of the listening socket the
// caller's namespace shows; else the holder of the socket the forwarder
// accepted for s (sock_diag names it), which it holds while it serves s
// (not once the forwarder closed s: lookSent passes a session whose
// connection is gone, and a forwarder found by none of the others is left
// to a look on a fresh connection).
// It does not fail: what it cannot find it leaves empty (see why).
func (c *Client) findForwarder(s *session) forwarder {
	f := forwarder{uid: s.peer.uid}
	var why []string
	candidates := []int{c.cachedPID(), s.peer.pid}
	if c.PIDFile != "" {
		pid, err := c.readPID()
		if err != nil {
			why = append(why, err.Error())
		}
		candidates = append(candidates, pid)
	}
	// A pid named twice (the one found last time is mostly the PID
	// file's) is looked into once: a rootless caller, which may not read
	// pasta's fd table, would otherwise fail the same way three times.
	looked := map[int]error{}
	for i, pid := range candidates {
		if pid <= 0 {
			continue
		}
		err, seen := looked[pid]
		if !seen {
			var fds *procnet.FDScan
			var held bool
			if fds, held, err = procnet.HoldsListener(pid, c.Path); held {
				f.pid, f.fds = pid, fds
				break
			}
			looked[pid] = err
		}
		if i == len(candidates)-1 && c.PIDFile != "" {
			if errors.Is(err, os.ErrPermission) {
				// Not ours to look into (non-dumpable): take the PID
				// file's word when the process exists.
				if _, serr := os.Stat(filepath.Join(procnet.Root, strconv.Itoa(pid))); serr == nil {
					f.pid = pid
					break
				}
			}
			why = append(why, fmt.Sprintf("PID file %s names %d, which does not hold %s", c.PIDFile, pid, c.Path))
		}
	}
	if f.pid == 0 {
		if inodes, err := procnet.UnixListeners(c.Path); err == nil && len(inodes) > 0 {
			if pid, err := procnet.FindHolder(inodes); err == nil {
				f.pid = pid
			}
		}
	}
	if f.pid == 0 {
		pid, err := c.acceptedHolder(s)
		if err != nil {
			f.why = strings.Join(append(why, err.Error()), "; ")
			return f
		}
		f.pid = pid
	}
	c.setCachedPID(f.pid)
	if f.fds == nil {
		if err := looked[f.pid]; err != nil {
			f.why = err.Error()
		} else if fds, err := procnet.ScanFDs(f.pid); err == nil {
			f.fds = fds
		} else {
			f.why = err.Error()
		}
	}
	return f
}

// holds reports whether f holds a socket with inode ino.
func (f *forwarder) holds(ino uint64) bool { return f.fds != nil && f.fds.Holds(ino) }

// acceptedHolder returns the process holding the socket the forwarder
// accepted for s.
func (c *Client) acceptedHolder(s *session) (int, error) {
	if s.conn == nil {
		return 0, fmt.Errorf("the connection to %s is closed: the socket the forwarder accepted for it is gone", c.Path)
	}
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var peer uint64
	var perr error
	if err := rc.Control(func(fd uintptr) { peer, perr = procnet.UnixPeer(int(fd)) }); err != nil {
		return 0, err
	}
	if perr != nil {
		return 0, fmt.Errorf("the forwarder's end of the connection to %s: %w", c.Path, perr)
	}
	if peer == 0 {
		return 0, fmt.Errorf("the connection to %s has no peer", c.Path)
	}
	return procnet.FindHolder([]uint64{peer})
}

// reread reads f's fd table again, after listeners with the inodes seen
// appeared that it did not hold: those it still does not hold are
// foreign from now on.
func (f *forwarder) reread(seen []uint64) {
	fds, err := procnet.ScanFDs(f.pid)
	if err != nil {
		return // keep the last table: the next look fails the same way
	}
	f.fds = fds
	if f.foreign == nil {
		f.foreign = map[uint64]bool{}
	}
	for _, ino := range seen {
		if !f.holds(ino) {
			f.foreign[ino] = true
		}
	}
}

// guestNS is the network namespace pasta is attached to, where it binds
// SPLICE listeners, as a path that opens it ("" when unknown: SPLICE
// rules go unchecked). It looks at the namespaces f's fd table held.
func (f forwarder) guestNS() string {
	if f.fds == nil {
		return ""
	}
	if ns := f.fds.Table().NetNS(); len(ns) == 1 {
		return ns[0]
	}
	return ""
}

func (c *Client) cachedPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastPID
}

func (c *Client) setCachedPID(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastPID = pid
}

// method says how listeners are attributed to f.
func (f forwarder) method() VerifyMethod {
	if f.fds != nil {
		return VerifyInodes
	}
	return VerifyUID
}

// netDir is the /proc net directory of f's network namespace (the caller's
// own when f was not found).
func (f forwarder) netDir() string {
	if f.pid == 0 {
		return filepath.Join(procnet.Root, "self", "net")
	}
	return filepath.Join(procnet.Root, strconv.Itoa(f.pid), "net")
}

// listeners are the listening sockets at the addresses rules need, by
// protocol and address, with a set of ports each.
type listeners struct {
	mine map[addrKey]*portSet // the forwarder's
	// others are sockets at those addresses that are not attributed to
	// the forwarder by inode, and not known to be foreign: their inodes.
	others map[listenKey]uint64
}

type addrKey struct {
	udp  bool
	addr netip.Addr
}

type listenKey struct {
	addrKey
	port uint16
}

// portSet is a set of ports, one bit each.
type portSet [65536 / 64]uint64

func (p *portSet) add(port uint16)      { p[port/64] |= 1 << (port % 64) }
func (p *portSet) has(port uint16) bool { return p != nil && p[port/64]&(1<<(port%64)) != 0 }

// readListeners reads the listening sockets that f holds for rules of
// pif at the addresses and ports of want, attributed by inode or uid:
// those of its own network namespace for HOST (through sock_diag when
// that is the caller's, else /proc/PID/net), those of the guest's
// namespace for SPLICE (pasta binds them there; only root can look). A
// socket at another port is not looked at (whose it is would cost a read
// of f's fd table). ok is false when the pif's sockets cannot be looked
// at.
func (f *forwarder) readListeners(pif string, want map[addrKey]*portSet) (ls listeners, ok bool, err error) {
	reset := func() {
		ls.mine, ls.others = make(map[addrKey]*portSet, len(want)), nil
		for k := range want {
			ls.mine[k] = new(portSet)
		}
	}
	add := func(s procnet.InetSocket) {
		k := addrKey{udp: s.UDP, addr: s.Local.Addr()}
		set := ls.mine[k]
		switch {
		case set == nil || !want[k].has(s.Local.Port()): // an address or port no rule needs
		case f.fds != nil && f.holds(s.Inode) || f.fds == nil && s.UID == f.uid:
			set.add(s.Local.Port())
		case f.fds != nil && !f.foreign[s.Inode]:
			if ls.others == nil {
				ls.others = map[listenKey]uint64{}
			}
			ls.others[listenKey{k, s.Local.Port()}] = s.Inode
		}
	}
	reset()
	var sel procnet.DiagSel // only the dumps of the families and protocols wanted
	for k := range want {
		sel |= procnet.DiagSelOf(k.udp, k.addr)
	}
	switch {
	case pif == wire.PifHost:
		same := f.sameNetNS()
		if same {
			err = procnet.DiagSelect(sel, add)
		}
		if !same || err != nil {
			reset()
			var socks []procnet.InetSocket
			if socks, err = procnet.Listeners(f.netDir()); err == nil {
				for _, s := range socks {
					add(s)
				}
			}
		}
	case pif == wire.PifSplice && f.fds != nil:
		ns := f.guestNS()
		if ns == "" {
			return ls, false, nil
		}
		err = procnet.DiagSelectIn(ns, sel, add)
	default:
		return ls, false, nil
	}
	if err != nil {
		return ls, false, fmt.Errorf("read listening sockets of the forwarder (pid %d) for %s: %w", f.pid, pif, err)
	}
	return ls, true, nil
}

// sameNetNS reports whether f runs in the caller's network namespace.
func (f forwarder) sameNetNS() bool {
	if f.pid == 0 {
		return true
	}
	theirs, err1 := os.Readlink(filepath.Join(procnet.Root, strconv.Itoa(f.pid), "ns", "net"))
	ours, err2 := os.Readlink(filepath.Join(procnet.Root, "self", "ns", "net"))
	return err1 == nil && err2 == nil && theirs == ours
}

// needsListener: rules whose sockets are checked. A non-weak rule needs a
// socket for every port; a weak rule for at least one (see failedPorts).
// Scan rules listen only where the guest does, so they are not checked.
func needsListener(r wire.Rule) bool {
	return !r.Flags.Has(wire.FlagScan)
}

// failedPorts says whether r, missing the ports missing, fails to listen
// as the forwarder counts failures: a non-weak rule fails on any port; a
// weak rule only when none of its ports listens. The forwarder stops
// binding at a failing rule either way, so a weak rule with no port
// silences every rule after it and counts as a failure here too.
func failedPorts(r wire.Rule, missing []uint16) bool {
	if len(missing) == 0 {
		return false
	}
	if r.Flags.Has(wire.FlagWeak) {
		return len(missing) == int(r.Last)-int(r.First)+1
	}
	return true
}

// listenAddrs is where the forwarder listens for r: "::" (one IPv6 socket
// accepting both families) for a dual-stack rule, else r's own address.
func (c *Client) listenAddrs(pif string, r wire.Rule) []netip.Addr {
	if c.ListenAddrs != nil {
		return c.ListenAddrs(pif, r)
	}
	if r.Flags.Has(wire.FlagDualStack) {
		return []netip.Addr{netip.IPv6Unspecified()}
	}
	return []netip.Addr{r.ListenAddr()}
}

// wantPorts adds to want the ports of r at each protocol and address
// where the forwarder listens for it.
func (c *Client) wantPorts(want map[addrKey]*portSet, pif string, r wire.Rule) {
	for _, k := range c.wantAddrs(nil, pif, r) {
		set := want[k]
		if set == nil {
			set = new(portSet)
			want[k] = set
		}
		for p := int(r.First); p <= int(r.Last); p++ {
			set.add(uint16(p))
		}
	}
}

// wantAddrs appends the protocol and addresses where the forwarder
// listens for r.
func (c *Client) wantAddrs(out []addrKey, pif string, r wire.Rule) []addrKey {
	for _, a := range c.listenAddrs(pif, r) {
		out = append(out, addrKey{udp: r.Proto == wire.ProtoUDP, addr: a.Unmap()})
	}
	return out
}

// missingPorts lists the ports of r with no listening socket of the
// forwarder in ls, and the inodes of other sockets found at those ports.
func (c *Client) missingPorts(ls listeners, pr PifRule) (ports []uint16, unknown []uint64) {
	keys := c.wantAddrs(nil, pr.Pif, pr.Rule)
	sets := make([]*portSet, len(keys))
	for i, k := range keys {
		sets[i] = ls.mine[k]
	}
	for p := int(pr.Rule.First); p <= int(pr.Rule.Last); p++ {
		for i, set := range sets {
			if set.has(uint16(p)) {
				continue
			}
			ports = append(ports, uint16(p))
			if ino, ok := ls.others[listenKey{keys[i], uint16(p)}]; ok {
				unknown = append(unknown, ino)
			}
			break
		}
	}
	return ports, unknown
}

// listenCheck is the result of checking listeners.
type listenCheck struct {
	failed   []RuleFailure // of the rules asked for
	warnings []RuleFailure // of every other rule in the tables
	// blocker is the first rule, in the order the forwarder binds (tables
	// in order, rules in order), that does not listen: it binds no rule
	// after it. Nil when every checked rule listens.
	blocker   *RuleFailure
	unchecked []PifRule // rules that need a listener but could not be checked
	method    VerifyMethod
	// unknown are inodes of listeners, not the forwarder's when its fd
	// table was read, at ports it lacks: it may have bound them since.
	unknown []uint64
	// held are rules taken out of the tables checked whose ports the
	// forwarder still listens on (or that could not be looked at).
	held []PifRule
}

// look is one consistent view of the forwarder: its tables and its
// listeners, both read while this client holds one connection.
type look struct {
	snap *Snapshot
	f    forwarder
	lc   listenCheck
}

// lookSettled reads the tables on a fresh connection and checks the
// listeners of mine(tables) before closing it (see lookOn).
func (c *Client) lookSettled(ctx context.Context, mine func(wire.Tables) []PifRule, settled func(look) bool) (look, error) {
	s, snap, err := c.open(ctx)
	if err != nil {
		return look{}, err
	}
	defer s.close()
	return c.lookOn(ctx, s, snap, mine, settled)
}

// lookOn checks the listeners of mine(tables) on the open session s,
// which read snap. The forwarder serves one client at a time, and every
// switch closes and reopens all its listeners, so while the connection is
// held no other client can switch: the listeners seen belong to the
// tables read. Until settled says the look is final, the listeners are
// checked again, for at most c.ListenWait (within ctx): pasta retries
// failed binds by itself, about once a second. It sends nothing.
func (c *Client) lookOn(ctx context.Context, s *session, snap *Snapshot, mine func(wire.Tables) []PifRule, settled func(look) bool) (look, error) {
	wait := c.ListenWait
	if wait <= 0 {
		wait = defaultListenWait
	}
	deadline := time.Now().Add(wait)
	rules := mine(snap.Tables)
	// While the connection is held, the forwarder is the same process and
	// only opens sockets (retrying failed binds): a retry reads its fd
	// table again only where an unattributed listener appeared.
	f := c.findForwarder(s)
	for {
		lc, err := c.checkOnce(&f, snap.Tables, rules, nil)
		if err == nil && len(lc.unknown) > 0 {
			f.reread(lc.unknown)
			lc, err = c.checkOnce(&f, snap.Tables, rules, nil)
		}
		l := look{snap: snap, f: f, lc: lc}
		if err != nil || settled(l) || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return l, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lookSent establishes an update's outcome without another connection,
// when it can: the forwarder closed the connection after reading every
// table, so it has switched to them or refused them, and if every rule
// asked for (mine) has the forwarder's listening socket on each port,
// and no rule it took out (gone) still has one, it switched, and the
// tables sent are the ones it holds (a client that switched since then
// would have had to take this update's rules out, and put back what it
// removed, to make the listeners say otherwise). Anything else, a
// listener it cannot attribute included, is for a look on a fresh
// connection to judge (ok false).
func (c *Client) lookSent(t tx, mine, gone []PifRule) (l look, ok bool) {
	// The listeners are those of the forwarder at the path now: it must
	// still be the one the update went to (its socket file unchanged),
	// else a fresh connection, whose Reached hook sees the change, judges.
	now := socketFile(c.Path)
	now.PeerPID = t.id.PeerPID
	if !t.id.Known() || now != t.id {
		return look{}, false
	}
	// The connection is closed: only the processes the peer, the PID
	// file and the socket's listeners name can be the forwarder here.
	f := c.findForwarder(&session{path: c.Path, peer: t.peer})
	if f.pid == 0 {
		return look{}, false
	}
	lc, err := c.checkOnce(&f, t.sent, mine, gone)
	if err != nil || len(lc.failed) > 0 || len(lc.unknown) > 0 || len(lc.held) > 0 {
		return look{}, false
	}
	return look{snap: &Snapshot{Tables: t.sent, PeerUID: t.peer.uid}, f: f, lc: lc}, true
}

// listening is the settled test of a look whose only question is whether
// the rules asked for listen.
func listening(l look) bool { return len(l.lc.failed) == 0 }

// checkOnce checks the listeners of every rule of ts that needs one
// (mine are the caller's; the failures of the others are warnings), and
// that no port of the rules gone, taken out of ts, still has one of the
// forwarder's (held).
func (c *Client) checkOnce(f *forwarder, ts wire.Tables, mine, gone []PifRule) (listenCheck, error) {
	lc := listenCheck{method: f.method()}
	isMine := map[wire.PifRuleKey]bool{}
	for _, m := range mine {
		isMine[m.Key()] = true
	}
	_, goneBy := wire.ByPif(gone)
	for _, t := range ts {
		pif := t.Name()
		want := map[addrKey]*portSet{}
		for _, r := range t.Rules {
			if needsListener(r) {
				c.wantPorts(want, pif, r)
			}
		}
		for _, r := range goneBy[pif] {
			c.wantPorts(want, pif, r)
		}
		if len(want) == 0 {
			continue // read once per pif, and only when a rule needs it
		}
		ls, ok, err := f.readListeners(pif, want)
		if err != nil {
			return lc, err
		}
		for _, r := range goneBy[pif] {
			pr := PifRule{Pif: pif, Rule: r}
			if ports, _ := c.missingPorts(ls, pr); !ok || len(ports) < int(r.Last)-int(r.First)+1 {
				lc.held = append(lc.held, pr)
			}
		}
		for _, r := range t.Rules {
			if !needsListener(r) {
				continue
			}
			pr := PifRule{Pif: pif, Rule: r}
			if !ok {
				if isMine[pr.Key()] {
					lc.unchecked = append(lc.unchecked, pr)
				}
				continue
			}
			ports, unknown := c.missingPorts(ls, pr)
			lc.unknown = append(lc.unknown, unknown...)
			if !failedPorts(r, ports) {
				continue
			}
			rf := RuleFailure{PifRule: pr, Ports: ports}
			if lc.blocker == nil {
				b := rf
				lc.blocker = &b
			} else {
				rf.BlockedBy = &lc.blocker.PifRule
			}
			if isMine[pr.Key()] {
				lc.failed = append(lc.failed, rf)
			} else {
				lc.warnings = append(lc.warnings, rf)
			}
		}
	}
	return lc, nil
}

// present reports whether ts holds pr byte for byte.
func present(ts wire.Tables, pr PifRule) bool {
	t := ts.Lookup(pr.Pif)
	return t != nil && t.Contains(pr.Rule)
}
