package translate

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// Property tests over seeded random inputs: each iteration's seed is in the
// failure message, and the run is the same every time.

// pair is one forwarded port as a mapping asks for it and as a rule gives it.
type pair struct {
	proto  wire.Proto
	listen [16]byte
	dual   bool
	host   uint16
	cont   uint16
}

// expected resolves a mapping the way Rules documents it, for a dual-stack
// table and no target, independently of the package's own code.
func expected(m PortMapping) pair {
	p := pair{proto: wire.ProtoTCP, host: uint16(m.HostPort), cont: uint16(m.ContainerPort)}
	if strings.EqualFold(m.Protocol, "udp") {
		p.proto = wire.ProtoUDP
	}
	if m.HostIP == "" {
		p.dual = true
		return p
	}
	if a := netip.MustParseAddr(m.HostIP); a.Is4() {
		v4 := a.As4()
		p.listen = [16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}
	} else {
		p.listen = a.As16()
	}
	return p
}

// overlapOracle says whether two host addresses (CNI hostIP strings) overlap
// for the forwarder: "" is everything, "0.0.0.0"/"::" every address of their
// family, any other address itself.
func overlapOracle(a, b string) bool {
	if a == "" || b == "" {
		return true
	}
	x, y := netip.MustParseAddr(a), netip.MustParseAddr(b)
	if x.Is4() != y.Is4() {
		return false
	}
	if x.IsUnspecified() || y.IsUnspecified() {
		return true
	}
	return x == y
}

// clashOracle is the brute-force answer to "do entries i and j conflict".
func clashOracle(a, b PortMapping) bool {
	pa, pb := expected(a), expected(b)
	if pa.proto != pb.proto || pa.host != pb.host || !overlapOracle(a.HostIP, b.HostIP) {
		return false
	}
	return pa != pb // an exact duplicate collapses
}

var poolFree = []string{"", "0.0.0.0", "::", "127.0.0.1", "127.0.0.2", "::1"}
var poolDistinct = []string{"127.0.0.1", "127.0.0.2", "::1", "fd00::5"}

// genMappings makes n mappings. With clean set, container ports are a
// function of (protocol, address, host port) with runs, over addresses that
// never overlap: no conflicts. Otherwise anything goes, conflicts included.
func genMappings(rng *rand.Rand, n int, clean bool) []PortMapping {
	pool := poolFree
	if clean {
		pool = poolDistinct
	}
	protos := []string{"tcp", "udp", "TCP", "Udp"}
	base := 1 + rng.IntN(65000)
	span := 1 + rng.IntN(3*n+1)
	block := 1 + rng.IntN(20)
	ms := make([]PortMapping, 0, n)
	for range n {
		pi, ai := rng.IntN(len(protos)), rng.IntN(len(pool))
		h := base + rng.IntN(span)
		if h > 65535 {
			h = 65535 - rng.IntN(100)
		}
		var c int
		if clean {
			off := (pi%2*7 + ai*13 + (h-base)/block*31) % 500
			c = 1 + (h+off)%65535
		} else {
			c = 1 + rng.IntN(8)
		}
		ms = append(ms, PortMapping{HostPort: h, ContainerPort: c, Protocol: protos[pi], HostIP: pool[ai]})
	}
	return ms
}

func expand(rs []wire.Rule) map[pair]bool {
	got := map[pair]bool{}
	for _, r := range rs {
		for p := int(r.First); p <= int(r.Last); p++ {
			got[pair{proto: r.Proto, listen: addr16(r.Listen), dual: r.Flags.Has(wire.FlagDualStack),
				host: uint16(p), cont: uint16(int(r.To) + p - int(r.First))}] = true
		}
	}
	return got
}

var otherEntry = regexp.MustCompile(`it and entry (\d+) \(`)

func TestPropertyCompaction(t *testing.T) {
	var clashes, merged int
	for seed := uint64(1); seed <= 3000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x7a9))
		clean := seed%2 == 0
		ms := genMappings(rng, 1+rng.IntN(80), clean)
		clash := -1
		for i := range ms {
			for j := range i {
				if clashOracle(ms[i], ms[j]) {
					clash = i
				}
			}
		}
		rs, err := Rules(ms, Options{}, capsDual)
		if clash >= 0 {
			clashes++
			var me *MappingError
			if !errors.As(err, &me) || !errors.Is(err, ErrConflict) {
				t.Fatalf("seed %d: entry %d clashes, got %v", seed, clash, err)
			}
			m := otherEntry.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("seed %d: message names no other entry: %v", seed, err)
			}
			other, _ := strconv.Atoi(m[1])
			if other >= me.Index || !clashOracle(ms[me.Index], ms[other]) {
				t.Fatalf("seed %d: entries %d and %d named, but they do not clash: %v", seed, other, me.Index, err)
			}
			continue
		}
		if clean && err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err != nil {
			var te *TableError
			if errors.As(err, &te) && errors.Is(err, ErrTooMany) {
				continue
			}
			t.Fatalf("seed %d: no clash, got %v", seed, err)
		}
		merged += len(ms) - len(rs)
		want := map[pair]bool{}
		for _, m := range ms {
			want[expected(m)] = true
		}
		got := expand(rs)
		if len(got) != len(want) {
			t.Fatalf("seed %d: %d pairs from %d rules, want %d", seed, len(got), len(rs), len(want))
		}
		for p := range want {
			if !got[p] {
				t.Fatalf("seed %d: pair %+v lost", seed, p)
			}
		}
		for i, r := range rs {
			if err := checkRule(r, capsDual); err != nil {
				t.Fatalf("seed %d: rule %s: %v", seed, r, err)
			}
			for _, o := range rs[:i] {
				if conflicts(o, r) {
					t.Fatalf("seed %d: rules %s and %s conflict", seed, o, r)
				}
			}
		}
		// Input order does not matter: same bytes.
		shuffled := slices.Clone(ms)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		rs2, err := Rules(shuffled, Options{}, capsDual)
		if err != nil {
			t.Fatalf("seed %d: shuffled: %v", seed, err)
		}
		if !slices.EqualFunc(rs, rs2, wire.Rule.Equal) {
			t.Fatalf("seed %d: order matters:\n%q\n%q", seed, strs(rs), strs(rs2))
		}
	}
	t.Logf("clashes found %d; entries merged away %d", clashes, merged)
	if clashes < 300 || merged < 5000 {
		t.Fatalf("the generator is off: %d clashes, %d entries merged", clashes, merged)
	}
}

// genForeign makes a table of up to n valid, mutually compatible rules
// that the container does not own, like other containers' or pasta's own.
func genForeign(rng *rand.Rand, n int) wire.Table {
	t := wire.NewTable(1, wire.PifHost, capsAll)
	addrs := []string{"", "0.0.0.0", "::", "127.0.0.1", "127.0.0.2", "::1", "fd00::5"}
	for tries := 0; len(t.Rules) < n && tries < 4*n; tries++ {
		a := addrs[rng.IntN(len(addrs))]
		var flags wire.Flags
		if a == "" {
			flags = wire.FlagDualStack
		}
		flags |= wire.Flags(rng.IntN(2)) * wire.FlagWeak
		first := uint16(1 + rng.IntN(3000))
		last := first + uint16(rng.IntN(20))
		p := wire.ProtoTCP
		if rng.IntN(2) == 0 {
			p = wire.ProtoUDP
		}
		r := rule(p, a, first, last, uint16(1+rng.IntN(1000)), flags)
		if rng.IntN(5) == 0 {
			r = withIf(r, "eth"+fmt.Sprint(rng.IntN(3)))
		}
		if checkRule(r, t.Caps) != nil || slices.ContainsFunc(t.Rules, func(o wire.Rule) bool { return conflicts(o, r) }) {
			continue
		}
		t.Rules = append(t.Rules, r)
	}
	return t
}

// without returns the rules of t that are not in xs, in order.
func without(t wire.Table, xs []wire.Rule) []wire.Rule {
	var out []wire.Rule
	for _, r := range t.Rules {
		if !slices.ContainsFunc(xs, r.Equal) {
			out = append(out, r)
		}
	}
	return out
}

func TestPropertyPlan(t *testing.T) {
	var ok, refused int
	for seed := uint64(1); seed <= 1500; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x51a))
		T := genForeign(rng, rng.IntN(60))
		before := enc(T)
		ms := genMappings(rng, 1+rng.IntN(40), true)
		for i := range ms {
			ms[i].HostPort = 1 + (ms[i].HostPort % 3500) // near the foreign rules
		}
		X, err := Rules(ms, Options{}, capsAll)
		if err != nil {
			continue // a clash made by folding the ports: not what this test is about
		}
		e1, err := Plan(T, nil, X)
		if !bytes.Equal(enc(T), before) {
			t.Fatalf("seed %d: Plan changed its input table", seed)
		}
		if err != nil {
			var te *TableError
			if !errors.As(err, &te) || te.Other == nil || !conflicts(te.Rule, *te.Other) ||
				!slices.ContainsFunc(X, te.Rule.Equal) || !strings.Contains(err.Error(), te.Other.String()) {
				t.Fatalf("seed %d: refusal is not a conflict of a desired rule naming both: %v", seed, err)
			}
			refused++
			continue
		}
		if slices.ContainsFunc(X, T.Contains) {
			continue // adoption of a rule already there: covered by TestPlanEdits
		}
		ok++
		T1 := T.Apply(e1)
		// Foreign rules untouched, in order, byte for byte.
		if got := without(T1, X); !slices.EqualFunc(got, T.Rules, wire.Rule.Equal) {
			t.Fatalf("seed %d: foreign rules touched:\n%q\n%q", seed, strs(got), strs(T.Rules))
		}
		for _, r := range X {
			if !T1.Contains(r) {
				t.Fatalf("seed %d: desired rule %s missing", seed, r)
			}
		}
		// Applying again, or planning the same state again, changes nothing.
		if !bytes.Equal(enc(T1.Apply(e1)), enc(T1)) {
			t.Fatalf("seed %d: Apply is not idempotent", seed)
		}
		for _, owned := range [][]wire.Rule{X, nil} { // nil: adoption after a crash
			e, err := Plan(T1, owned, X)
			if err != nil {
				t.Fatalf("seed %d: planning the same state again (owned %d): %v", seed, len(owned), err)
			}
			if !bytes.Equal(enc(T1.Apply(e)), enc(T1)) {
				t.Fatalf("seed %d: planning the same state again changed the table", seed)
			}
		}
		// Then remove: the original table, byte for byte.
		e2, err := Plan(T1, X, nil)
		if err != nil {
			t.Fatalf("seed %d: remove: %v", seed, err)
		}
		if !bytes.Equal(enc(T1.Apply(e2)), before) {
			t.Fatalf("seed %d: add then remove did not restore the table", seed)
		}
		// A change to another desired state keeps foreign rules and
		// leaves none of the old ones that are not wanted.
		Y, err := Rules(genMappings(rng, 1+rng.IntN(40), true), Options{}, capsAll)
		if err != nil {
			continue
		}
		e3, err := Plan(T1, X, Y)
		if err != nil {
			continue
		}
		T3 := T1.Apply(e3)
		if got := without(T3, append(slices.Clone(X), Y...)); !slices.EqualFunc(got, without(T, Y), wire.Rule.Equal) {
			t.Fatalf("seed %d: change touched foreign rules", seed)
		}
		for _, r := range X {
			if T3.Contains(r) != slices.ContainsFunc(Y, r.Equal) {
				t.Fatalf("seed %d: rule %s: in table %v, desired %v", seed, r, T3.Contains(r), !T3.Contains(r))
			}
		}
	}
	t.Logf("plans accepted %d, refused for a conflict %d", ok, refused)
	if ok < 100 || refused < 100 {
		t.Fatalf("the generator is off: %d accepted, %d refused; both paths need exercise", ok, refused)
	}
}
