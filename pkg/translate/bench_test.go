package translate

import (
	"math/rand/v2"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// BenchmarkCompile65535 compacts every port, one entry each and shuffled,
// into the one rule they make.
func BenchmarkCompile65535(b *testing.B) {
	ms := make([]PortMapping, 65535)
	for i := range ms {
		ms[i] = tcp(i+1, i+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	b.ReportAllocs()
	for b.Loop() {
		rs, err := Rules(ms, Options{}, capsDual)
		if err != nil || len(rs) != 1 {
			b.Fatalf("%d rules, %v", len(rs), err)
		}
	}
}

// BenchmarkPlanApplyFull edits a full table: 245 rules of others, and a
// container that replaces its 10 rules with 10 others (255 before, 255
// after, every pair checked for conflicts).
func BenchmarkPlanApplyFull(b *testing.B) {
	t := wire.NewTable(1, wire.PifHost, capsAll)
	for i := range 245 {
		t.Rules = append(t.Rules, rule(wire.ProtoTCP, "127.0.0.1", uint16(1000+i), uint16(1000+i), 80, 0))
	}
	var owned, desired []wire.Rule
	for i := range 10 {
		owned = append(owned, rule(wire.ProtoTCP, "", uint16(20000+i*10), uint16(20000+i*10+5), 80, wire.FlagDualStack))
		desired = append(desired, rule(wire.ProtoUDP, "", uint16(20000+i*10), uint16(20000+i*10+5), 80, wire.FlagDualStack))
	}
	t.Rules = append(t.Rules, owned...)
	b.ReportAllocs()
	for b.Loop() {
		e, err := Plan(t, owned, desired)
		if err != nil {
			b.Fatal(err)
		}
		if next := t.Apply(e); len(next.Rules) != wire.MaxRules {
			b.Fatalf("%d rules", len(next.Rules))
		}
	}
}
