package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/wire"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// Plugin runs the CNI verbs. It holds only where to write: every call
// parses its own configuration, and all lasting state is in the store.
type Plugin struct {
	Stdout io.Writer // the CNI result
	Stderr io.Writer // warnings, for the runtime's log
	// Client, when set, makes the control socket client for a socket and
	// PID file (tests hand ctltest's listen addresses to it); nil makes
	// a default ctlclient.Client.
	Client func(socket, pidFile string) *ctlclient.Client
	// StopAt is a test hook, nil in production. When set, it is called at
	// each named step of ADD and DEL (and of the updates they send, see
	// ctlclient.Client.Step); an error it returns ends the verb there, as
	// if the process had been killed at that point (the record lock is
	// released either way).
	StopAt func(step string) error
}

// step calls the StopAt hook, if any, at a named step of a verb.
func (p *Plugin) step(name string) error {
	if p.StopAt == nil {
		return nil
	}
	return p.StopAt(name)
}

// Funcs returns the verbs for skel.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

func (p *Plugin) warnf(format string, a ...any) {
	if p.Stderr != nil {
		fmt.Fprintf(p.Stderr, "passt-portmap: "+format+"\n", a...)
	}
}

func envOf(args *skel.CmdArgs) Env {
	return Env{ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Args: args.Args}
}

func keyOf(cfg *Config, args *skel.CmdArgs) store.Key {
	return store.Key{Network: cfg.Network, ContainerID: args.ContainerID, IfName: args.IfName}
}

// recordStore is the ownership store under the data directory.
func recordStore(cfg *Config) *store.Store {
	return store.New(filepath.Join(cfg.DataDir, "records"))
}

// forwarderDir is the directory of an attachment's managed forwarder. It
// is named by a hash of the key: the socket path inside it must stay
// under the 108 bytes of a UNIX socket address, and container IDs are
// often 64 characters long. The record names the directory.
func forwarderDir(dataDir string, k store.Key) string {
	h := sha256.Sum256([]byte(k.Network + "\x00" + k.ContainerID + "\x00" + k.IfName))
	return filepath.Join(dataDir, "forwarders", hex.EncodeToString(h[:8]))
}

func (p *Plugin) client(socket, pidFile string) *ctlclient.Client {
	c := &ctlclient.Client{Path: socket, PIDFile: pidFile, ListenWait: listenWait}
	if p.Client != nil {
		c = p.Client(socket, pidFile)
	}
	c.Step = p.StopAt
	return c
}

// listenWait is how long a listener check polls before it declares a
// port not listening. The client checks while it holds a connection, so no
// other client's switch (which closes and reopens every listener) can come
// between the tables it read and the listeners it sees; the wait only
// covers pasta's own retry of failed binds, and holds up other clients of
// the forwarder while it lasts, so it is short.
const listenWait = 300 * time.Millisecond

func (cfg *Config) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cfg.Timeout)
}

// resolveSocket expands the configured socket and PID file of an
// external forwarder for this call.
func resolveSocket(cfg *Config, env Env) (socket, pidFile string, err error) {
	key := "socket"
	if cfg.SocketFromArgs {
		key = "CNI_ARGS " + ArgSocket
	}
	if socket, err = ExpandSocket(key, cfg.Socket, env); err != nil {
		return "", "", err
	}
	if cfg.PIDFile != "" {
		if pidFile, err = Expand("pidFile", cfg.PIDFile, env); err != nil {
			return "", "", err
		}
	}
	return socket, pidFile, nil
}

// socketErr ties an error to the socket it happened on, for messages.
type socketErr struct {
	Socket string
	Err    error
}

func (e *socketErr) Error() string { return e.Err.Error() }
func (e *socketErr) Unwrap() error { return e.Err }

func atSocket(socket string, err error) error {
	if err == nil {
		return nil
	}
	return &socketErr{Socket: socket, Err: err}
}

// cniErr converts a verb's error for skel.
func cniErr(err error) error {
	if err == nil {
		return nil
	}
	socket := ""
	var se *socketErr
	if errors.As(err, &se) {
		socket = se.Socket
	}
	return toCNI(err, socket)
}

// gone reports whether err says the forwarder no longer exists: its
// socket is missing or nobody listens on it. A busy forwarder is not gone.
func gone(err error) bool {
	var ue *ctlclient.UnreachableError
	if !errors.As(err, &ue) {
		return false
	}
	return errors.Is(ue.Err, syscall.ENOENT) || errors.Is(ue.Err, syscall.ECONNREFUSED) || errors.Is(ue.Err, syscall.ENOTSOCK)
}

// forwarderGone makes one connection attempt: a socket file that is
// missing or refuses connections belongs to no running forwarder, whose
// rules are gone with it. The client retries both until its deadline,
// which suits a forwarder that is starting, but would make every DEL of
// a dead one wait the whole timeout. A connection that succeeds is closed
// at once, before sending anything: a read-only transaction.
func forwarderGone(socket string) bool {
	c, err := net.DialTimeout("unix", socket, 200*time.Millisecond)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// update runs one transaction on the forwarder at socket, bounded by the
// configured timeout, and reports other owners' rules that do not listen.
func (p *Plugin) update(cfg *Config, socket, pidFile string, plan ctlclient.Planner) error {
	ctx, cancel := cfg.context()
	defer cancel()
	res, err := p.client(socket, pidFile).Update(ctx, plan, ctlclient.UpdateOptions{NoVerify: !cfg.Verify})
	if res != nil {
		p.reportWarnings(socket, res.Warnings)
	}
	return err
}

func (p *Plugin) reportWarnings(socket string, ws []ctlclient.RuleFailure) {
	for _, w := range ws {
		p.warnf("forwarder at %s: rule of another owner does not listen: %s: host ports %s", socket, ruleText(w.Pif, w.Rule), portList(w.Ports))
	}
}

// sharedRules returns the rules that other attachments of the network
// record as theirs on the same socket: a removal must leave them alone.
func sharedRules(st *store.Store, self store.Key, socket string) map[[wire.RuleSize]byte]bool {
	out := map[[wire.RuleSize]byte]bool{}
	es, err := st.List(self.Network)
	if err != nil {
		return out
	}
	for _, e := range es {
		if e.Key == self || e.Record == nil || e.Record.Socket != socket {
			continue
		}
		for _, o := range e.Record.Rules {
			out[o.Rule.Key()] = true
		}
	}
	return out
}

// removeRules takes rules out of the forwarder at socket in one
// transaction, leaving any rule that another attachment also owns. A
// forwarder that is gone has no rules left: that is success.
func (p *Plugin) removeRules(cfg *Config, st *store.Store, self store.Key, socket, pidFile string, rules []store.OwnedRule) error {
	shared := sharedRules(st, self, socket)
	byPif := map[string][]wire.Rule{}
	var pifs []string
	for _, o := range rules {
		if shared[o.Rule.Key()] {
			p.warnf("leaving %s in place: another attachment owns it too", ruleText(o.Pif, o.Rule))
			continue
		}
		if _, ok := byPif[o.Pif]; !ok {
			pifs = append(pifs, o.Pif)
		}
		byPif[o.Pif] = append(byPif[o.Pif], o.Rule)
	}
	if len(pifs) == 0 {
		return nil
	}
	if forwarderGone(socket) {
		return nil
	}
	plan := func(live wire.Tables) ([]wire.Edit, error) {
		var edits []wire.Edit
		for _, pif := range pifs {
			if live.Lookup(pif) != nil {
				edits = append(edits, wire.Edit{Pif: pif, Remove: byPif[pif]})
			}
		}
		return edits, nil
	}
	err := p.update(cfg, socket, pidFile, plan)
	if gone(err) {
		return nil
	}
	return atSocket(socket, err)
}

func ownedRules(pif string, rs []wire.Rule) []store.OwnedRule {
	out := make([]store.OwnedRule, 0, len(rs))
	for _, r := range rs {
		out = append(out, store.OwnedRule{Pif: pif, Rule: r})
	}
	return out
}

// unionRules returns a followed by the rules of b not in a.
func unionRules(a []store.OwnedRule, b []ctlclient.PifRule) []store.OwnedRule {
	type k struct {
		pif string
		key [wire.RuleSize]byte
	}
	seen := map[k]bool{}
	out := append([]store.OwnedRule(nil), a...)
	for _, o := range a {
		seen[k{o.Pif, o.Rule.Key()}] = true
	}
	for _, r := range b {
		if !seen[k{r.Pif, r.Rule.Key()}] {
			seen[k{r.Pif, r.Rule.Key()}] = true
			out = append(out, store.OwnedRule{Pif: r.Pif, Rule: r.Rule})
		}
	}
	return out
}
