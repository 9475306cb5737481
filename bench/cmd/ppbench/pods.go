package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// podTool runs a whole network configuration list through libcni, as a
// runtime does for a pod: every ADD gets a fresh network namespace (made
// before the clock starts) and every DEL removes it (after the clock
// stops). The plugins run in the bench's own namespace, which stands for
// the node: a bridge, its iptables rules and the managed pastas all live
// there.
type podTool struct {
	name   string
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList
	prefix string // of the namespaces made for the pods
	// iptables says the list's port mappings end up as netfilter rules
	// (portmap), not as listening sockets.
	iptables bool
}

func (t *podTool) Name() string { return t.name }

func (t *podTool) netns(c Container) string { return t.prefix + c.ID }

func (t *podTool) rt(c Container) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.ID, NetNS: "/run/netns/" + t.netns(c), IfName: "eth0",
		CapabilityArgs: map[string]any{"portMappings": c.Maps}}
}

// Add makes the pod's namespace, then times the ADD of the list.
func (t *podTool) Add(ctx context.Context, c Container) (Sample, error) {
	name := t.netns(c)
	if err := makeNetns(ctx, name); err != nil {
		return Sample{}, err
	}
	start := time.Now()
	_, err := t.cni.AddNetworkList(ctx, t.list, t.rt(c))
	sm := Sample{Wall: time.Since(start)}
	if err != nil {
		// As a runtime does after a failed ADD: DEL, so that what the
		// plugins before the failing one set up (a bridge's address
		// from host-local) is released.
		_ = t.cni.DelNetworkList(ctx, t.list, t.rt(c))
		_, _ = sh(ctx, "ip", "netns", "del", name)
		return sm, fmt.Errorf("%s ADD %s: %w", t.name, c.ID, err)
	}
	return sm, nil
}

// Del times the DEL of the list, then removes the pod's namespace.
func (t *podTool) Del(ctx context.Context, c Container) (Sample, error) {
	start := time.Now()
	err := t.cni.DelNetworkList(ctx, t.list, t.rt(c))
	sm := Sample{Wall: time.Since(start)}
	if _, nerr := sh(ctx, "ip", "netns", "del", t.netns(c)); nerr != nil && err == nil {
		err = nerr
	}
	if err != nil {
		return sm, fmt.Errorf("%s DEL %s: %w", t.name, c.ID, err)
	}
	return sm, nil
}

// podConf is one plugin of a list, as a map to marshal.
type podConf = map[string]any

// newPodTool builds a tool from the plugins of one list.
func (b *Bench) newPodTool(name, network string, plugins []podConf, iptables bool) (*podTool, error) {
	list := map[string]any{"cniVersion": "1.0.0", "name": network, "plugins": plugins}
	raw, err := json.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	conf, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cache := filepath.Join(b.cfg.Work, "cni-cache")
	return &podTool{name: name, cni: libcni.NewCNIConfigWithCacheDir([]string{b.cfg.CNIBin}, cache, nil),
		list: conf, prefix: b.cfg.Prefix + "pod-", iptables: iptables}, nil
}

// bridgeConfs are the bridge and host-local plugins of a bridge network
// on the node, the way a Kubernetes node or Podman's CNI backend sets one
// up: a gateway bridge with masquerading, addresses from the benchmarking
// range.
func (b *Bench) bridgeConfs(bridge, subnet string) []podConf {
	return []podConf{{
		"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
		"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": subnet}}},
			"dataDir": filepath.Join(b.cfg.Work, "ipam")},
	}}
}

// managedConf is passt-portmap alone in its list: it starts a pasta for
// the pod.
func (b *Bench) managedConf(dataDir string) podConf {
	return podConf{"type": filepath.Base(b.cfg.Plugin), "pasta": b.env.PastaBin, "dataDir": dataDir,
		"capabilities": map[string]any{"portMappings": true}}
}

// setupPodTools makes the tools of the pod cases: passt-portmap managed,
// bridge + host-local + portmap, and bridge + host-local + passt-portmap
// chained after them.
func (b *Bench) setupPodTools() error {
	if b.cfg.CNIBin == "" {
		return errors.New("-cni-bin (bridge, host-local, portmap and passt-portmap) is required for the pod cases")
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(b.cfg.CNIBin, p)); err != nil {
			return fmt.Errorf("pod cases: %w", err)
		}
	}
	// Addresses an interrupted run left allocated would be refused as
	// duplicates: host-local's store starts empty.
	for _, d := range []string{"ipam", "cni-cache"} {
		if err := os.RemoveAll(filepath.Join(b.cfg.Work, d)); err != nil {
			return fmt.Errorf("pod cases: %w", err)
		}
	}
	var err error
	pm := podConf{"type": "portmap", "capabilities": map[string]any{"portMappings": true}, "snat": true}
	if b.podBridge, err = b.newPodTool("bridge + host-local + portmap", "pbench-bridge",
		append(b.bridgeConfs(b.cfg.Prefix+"br0", "198.19.0.0/17"), pm), true); err != nil {
		return err
	}
	if b.cfg.Plugin == "" {
		return nil
	}
	if b.podManaged, err = b.newPodTool("passt-portmap, managed", "pbench-managed",
		[]podConf{b.managedConf(filepath.Join(b.cfg.Work, "managed"))}, false); err != nil {
		return err
	}
	chained := b.managedConf(filepath.Join(b.cfg.Work, "chained"))
	if b.cfg.ChainedConf != "" {
		var extra map[string]any
		if err := json.Unmarshal([]byte(b.cfg.ChainedConf), &extra); err != nil {
			return fmt.Errorf("-chained-conf: %w", err)
		}
		for k, v := range extra {
			chained[k] = v
		}
	}
	b.podChained, err = b.newPodTool("bridge + host-local + passt-portmap (chained)", "pbench-chained",
		append(b.bridgeConfs(b.cfg.Prefix+"br1", "198.19.128.0/17"), chained), false)
	return err
}

// checkPod reports whether a pod's first mapping is in place: a DNAT
// rule of portmap, or a socket listening on the host port in the node's
// namespace (passt-portmap's forwarder).
func (b *Bench) checkPod(ctx context.Context, t Tool, c Container) (bool, error) {
	port := c.Maps[0].HostPort
	if pt, ok := t.(*podTool); ok && pt.iptables {
		out, err := sh(ctx, "iptables-save", "-t", "nat")
		if err != nil {
			return false, err
		}
		out2, err := sh(ctx, "nft", "list", "ruleset")
		return containsWord(out, "--dport "+strconv.Itoa(port)) || containsWord(out2, "dport "+strconv.Itoa(port)), err
	}
	return listened("tcp", port), nil
}

// listened reports whether a socket listens on port (any address) in this
// namespace: binding it fails with EADDRINUSE.
func listened(network string, port int) bool {
	l, err := net.Listen(network, ":"+strconv.Itoa(port))
	if err == nil {
		l.Close()
		return false
	}
	return errors.Is(err, syscall.EADDRINUSE)
}

// casePods: one pod's ADD and DEL, a managed passt-portmap network
// against bridge + host-local + portmap, and bridge + host-local +
// passt-portmap chained against the same, in pairs alternating run by
// run. A command that does not work (the chained configuration with a
// plugin that has no chained mode) is reported as not available.
func (b *Bench) casePods(ctx context.Context) error {
	if err := b.setupPodTools(); err != nil {
		return err
	}
	c := fixed("pod", []portMapping{{HostPort: 22000, ContainerPort: 80, Protocol: "tcp"}})
	for _, p := range []*podTool{b.podManaged, b.podChained} {
		if p == nil {
			continue
		}
		log.Printf("  pair %s / %s", p.Name(), b.podBridge.Name())
		res, err := cycle(ctx, []Entry{{p, c}, {b.podBridge, c}}, b.cfg.PodRuns, b.cfg.Budget, b.checkPod)
		if err != nil {
			return fmt.Errorf("pair %s / %s: %w", p.Name(), b.podBridge.Name(), err)
		}
		b.R.Pods = append(b.R.Pods, Pair{A: res[0], B: res[1]})
		b.cleanPods(ctx)
	}
	return nil
}

// cleanPods removes what a failed pod run may have left: namespaces of
// pods and the bench's bridges (the managed pastas exit with their
// namespaces).
func (b *Bench) cleanPods(ctx context.Context) {
	out, _ := sh(ctx, "ip", "netns", "list")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], b.cfg.Prefix+"pod-") {
			_, _ = sh(ctx, "ip", "netns", "del", f[0])
		}
	}
}

// NodeRow is the node-scale case: one more managed pod's ADD and DEL on a
// node without other managed pods, then with Pods of them running, then
// without again.
type NodeRow struct {
	Pods   int     `json:"pods"`
	Before *Result `json:"before"`
	At     *Result `json:"at"`
	After  *Result `json:"after"`
	Fill   *Series `json:"fill"`  // the ADDs that started the Pods, in order
	Drain  *Series `json:"drain"` // their DELs
	Note   string  `json:"note,omitempty"`
}

// caseNode measures how one more managed pod's ADD and DEL grow with the
// managed pods already on the node (Kubernetes' default is 110 per node).
func (b *Bench) caseNode(ctx context.Context) error {
	if err := b.setupPodTools(); err != nil {
		return err
	}
	if b.podManaged == nil {
		return errors.New("node case: no passt-portmap binary")
	}
	t := b.podManaged
	probe := fixed("node-probe", []portMapping{{HostPort: 23000, ContainerPort: 80, Protocol: "tcp"}})
	row := &NodeRow{Pods: b.cfg.NodePods, Fill: &Series{Tool: t.Name(), Op: "ADD"}, Drain: &Series{Tool: t.Name(), Op: "DEL"}}
	b.R.Node = row
	phase := func(what string) (*Result, error) {
		log.Printf("  one more pod, %s", what)
		res, err := cycle(ctx, []Entry{{t, probe}}, b.cfg.PodRuns, b.cfg.Budget, b.checkPod)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return res[0], nil
	}
	var err error
	if row.Before, err = phase("no other managed pod"); err != nil {
		return err
	}
	fill := make([]Container, b.cfg.NodePods)
	for i := range fill {
		fill[i] = Container{ID: fmt.Sprintf("node-fill-%d", i), Maps: []portMapping{{HostPort: 24000 + i, ContainerPort: 80, Protocol: "tcp"}}}
	}
	defer func() {
		for _, c := range fill {
			if _, err := os.Stat("/run/netns/" + t.netns(c)); err == nil {
				sm, err := t.Del(ctx, c)
				row.Drain.add(sm, err)
			}
		}
	}()
	start := time.Now()
	for _, c := range fill {
		sm, err := t.Add(ctx, c)
		row.Fill.add(sm, err)
		if err != nil {
			return fmt.Errorf("start pod %s: %w", c.ID, err)
		}
	}
	log.Printf("  started %d managed pods in %v", len(fill), time.Since(start).Round(time.Millisecond))
	if row.At, err = phase(fmt.Sprintf("%d other managed pods", len(fill))); err != nil {
		return err
	}
	for _, c := range fill {
		sm, err := t.Del(ctx, c)
		row.Drain.add(sm, err)
		if err != nil {
			log.Printf("  %v", err)
		}
	}
	row.After, err = phase("no other managed pod again")
	return err
}
