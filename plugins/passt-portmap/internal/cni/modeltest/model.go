package modeltest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/store"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// The world: its attachments, the ports they map and the rules another
// client may add.
const (
	modelAtts     = 12 // attachments, alternately on two networks
	modelVariants = 2  // mappings an attachment may be added with
	modelPool     = 4  // ports only other clients use
	// Ports is how many consecutive free ports a world needs, from the
	// base its World is made with.
	Ports = modelAtts*modelVariants + modelPool
)

// foreignCandidates is how many rules another client may add: one on each
// pool port, and for each attachment's mapping a byte-equal copy of its
// rule and a rule on the same port at 127.0.0.1 (which overlaps it).
const foreignCandidates = modelPool + modelAtts*modelVariants*2

// World makes a fresh world for one run of a sequence: a forwarder (see
// Ctltest and Pasta), a data directory, nothing in either.
type World func(t testing.TB) *Model

// Model is one run of a sequence in a fresh world, and what the test
// knows of that world: the plugin's records are read from its store, the
// rest is noted as the steps run.
type Model struct {
	t       testing.TB
	fwd     forwarder
	dataDir string
	st      *store.Store
	base    uint16 // first of Ports consecutive free ports
	timeout string

	foreign  map[[wire.RuleSize]byte]wire.Rule // rules another client holds
	orphaned map[[wire.RuleSize]byte]bool      // left by records the test removed
	damaged  map[int]damage                    // records the test truncated
	doubt    [modelAtts]bool                   // a verb of the attachment was stopped between sending and recording
	variant  [modelAtts]int                    // mappings of the last ADD, for CHECK and DEL
	gen      int                               // forwarder restarts so far
	addedGen [modelAtts]int                    // gen when the attachment's last ADD completed
	held     map[uint16]bool                   // ports another process holds (opHold)
	mu       sync.Mutex                        // guards trace and stats while verbs run together (opPar)
	trace    []string
	stats    map[string]int // outcomes by verb, for the log
}

// newModel makes a world around the forwarder fwd makes, with a fresh
// data directory (made first) and the plugin's timeout.
func newModel(t testing.TB, base uint16, timeout string, fwd func() forwarder) *Model {
	dir := t.TempDir()
	return &Model{
		t: t, fwd: fwd(),
		dataDir: dir, st: store.New(filepath.Join(dir, "records")), base: base, timeout: timeout,
		foreign: map[[wire.RuleSize]byte]wire.Rule{}, orphaned: map[[wire.RuleSize]byte]bool{}, damaged: map[int]damage{},
		held: map[uint16]bool{},
	}
}

// damage is a record the test truncated: what it claimed before.
type damage struct {
	claims []store.OwnedRule
}

func modelKey(i int) store.Key {
	return store.Key{Network: fmt.Sprintf("model-%d", i%2), ContainerID: fmt.Sprintf("a%d", i), IfName: "eth0"}
}

func (m *Model) port(att, variant int) uint16 {
	return m.base + uint16(att*modelVariants+variant)
}

// udpAtt says whether attachment att's mappings are UDP: every third are.
func udpAtt(att int) bool { return att%3 == 2 }

func (m *Model) mapping(att, variant int) translate.PortMapping {
	proto := "tcp"
	if udpAtt(att) {
		proto = "udp"
	}
	return translate.PortMapping{HostPort: int(m.port(att, variant)), ContainerPort: 80 + variant, Protocol: proto}
}

// allCaps are the capabilities the core compiles mappings with before it
// asks a forwarder.
const allCaps = wire.CapIPv4 | wire.CapIPv6 | wire.CapTCP | wire.CapUDP | wire.CapScan | wire.CapIfName

// weak says whether the mappings of variant are weak: the second are.
func weak(variant int) bool { return variant == 1 }

// rule is the rule the plugin makes of an attachment's mapping.
func (m *Model) rule(att, variant int) (wire.Rule, error) {
	rs, err := translate.Rules([]translate.PortMapping{m.mapping(att, variant)}, translate.Options{Weak: weak(variant)}, allCaps)
	if err != nil || len(rs) != 1 {
		return wire.Rule{}, fmt.Errorf("mapping %+v: %d rules, %v", m.mapping(att, variant), len(rs), err)
	}
	return rs[0], nil
}

func (m *Model) foreignRule(n int) wire.Rule {
	if n < modelPool {
		p := m.base + uint16(modelAtts*modelVariants+n)
		return wire.NewRule(wire.ProtoTCP, netip.Addr{}, p, p, 90, wire.FlagDualStack)
	}
	n -= modelPool
	att, variant := n/(2*modelVariants), (n/2)%modelVariants
	if n%2 == 0 {
		r, _ := m.rule(att, variant)
		return r
	}
	p := m.port(att, variant)
	proto := wire.ProtoTCP
	if udpAtt(att) {
		proto = wire.ProtoUDP
	}
	return wire.NewRule(proto, netip.AddrFrom4([4]byte{127, 0, 0, 1}), p, p, 90, 0)
}

// copyOf says whether foreign candidate n is a byte-equal copy of an
// attachment's rule, and whose.
func (m *Model) copyOf(n int) (att int, ok bool) {
	if n < modelPool {
		return 0, false
	}
	n -= modelPool
	return n / (2 * modelVariants), n%2 == 0
}

func (m *Model) conf(att int, extra map[string]any) []byte {
	k := modelKey(att)
	socket, pidFile := m.fwd.socket()
	c := map[string]any{
		"cniVersion": "1.1.0", "name": k.Network, "type": "passt-portmap",
		"socket": socket, "dataDir": m.dataDir, "timeout": m.timeout,
		"runtimeConfig": map[string]any{"portMappings": []translate.PortMapping{m.mapping(att, m.variant[att])}},
	}
	if pidFile != "" {
		c["pidFile"] = pidFile
	}
	if weak(m.variant[att]) {
		c["weak"] = true
	}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

// settle updates whether att's rules are in doubt after one of its verbs:
// one stopped after it may have sent something and before it recorded it
// leaves them so, one that completed settles them.
func (m *Model) settle(att int, stopped string, err error) {
	if err == nil && stopped == "" || stopped == "add: recorded" {
		m.addedGen[att] = m.gen // an ADD's record names the forwarder of now
	}
	switch stopped {
	case "add: locked", "del: locked", "add: recorded", "add: queued", "add: batched":
		// Nothing sent yet by this call, or all of it recorded.
	case "":
		if err == nil {
			m.doubt[att] = false
		}
	default:
		m.doubt[att] = true
	}
}

// stamp is when att's record (or intent) was last written, zero when it
// has none.
func (m *Model) stamp(att int) time.Time {
	rec, err := m.st.Get(modelKey(att))
	if err != nil {
		return time.Time{}
	}
	return rec.Updated
}

// rewritten notes an ADD of att that wrote its record (stamp was the
// record's before the call) owning the rule of its mappings, whether
// the call completed, failed or was stopped: the record is then written
// on the forwarder running now (a record of rules it holds is written
// beside the send, and a waiting ADD's by the call that ran its
// transaction, which may complete it after the waiter was stopped).
func (m *Model) rewritten(att int, stamp time.Time) {
	if s := m.stamp(att); !s.IsZero() && !s.Equal(stamp) && m.ownsVariant(att) {
		m.addedGen[att] = m.gen
	}
}

// ownsVariant reports whether att's record owns the rule of its last
// ADD's mappings.
func (m *Model) ownsVariant(att int) bool {
	rec, err := m.st.Get(modelKey(att))
	if err != nil {
		return false
	}
	r, err := m.rule(att, m.variant[att])
	if err != nil {
		return false
	}
	return slices.ContainsFunc(rec.Rules, func(o store.OwnedRule) bool { return o.Pif == wire.PifHost && o.Rule.Equal(r) })
}

// claims returns the rules attachment att's record claims (its rules and
// pending ones) as the store reads it (from its backup copy when the
// record file is damaged or lost); when neither can be read, what it
// claimed before the test damaged it.
func (m *Model) claims(att int) ([]store.OwnedRule, error) {
	rec, err := m.st.Get(modelKey(att))
	switch {
	case err == nil:
		delete(m.damaged, att)
		return rec.Claimed(), nil
	case errors.Is(err, fs.ErrNotExist):
		delete(m.damaged, att)
		return nil, nil
	}
	if d, ok := m.damaged[att]; ok {
		return d.claims, nil
	}
	return nil, fmt.Errorf("record of a%d is unreadable, and the test did not damage it: %w", att, err)
}

// liveClaims are att's claims (see claims) on the forwarder running now:
// none when its record names a forwarder restarted since.
func (m *Model) liveClaims(att int) ([]store.OwnedRule, error) {
	claims, err := m.claims(att)
	if err != nil {
		return nil, err
	}
	if rec, err := m.st.Get(modelKey(att)); err == nil && rec.Identity != nil {
		now, err := m.fwd.identity()
		if err != nil {
			return nil, err
		}
		if *rec.Identity != now {
			return nil, nil
		}
	}
	return claims, nil
}

// damaged1 notes what att's record claimed (claims) before the test
// damaged its files: when the store can no longer read it, those are the
// record's; when neither file is left, they have no owner now, by the
// test's doing.
func (m *Model) damaged1(att int, claims []store.OwnedRule) {
	_, err := m.st.Get(modelKey(att))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for _, c := range claims {
			m.orphaned[c.Rule.Key()] = true
		}
	case err != nil:
		m.damaged[att] = damage{claims: claims}
	}
}

// recordFiles are the files o damages: the record file, its backup copy,
// or both (o.variant 0, 1, 2).
func (m *Model) recordFiles(k store.Key, o op) []string {
	switch o.variant {
	case 0:
		return []string{m.st.RecordPath(k)}
	case 1:
		return []string{m.st.BackupPath(k)}
	}
	return []string{m.st.RecordPath(k), m.st.BackupPath(k)}
}
