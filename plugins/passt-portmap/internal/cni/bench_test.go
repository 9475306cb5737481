package cni

import (
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// BenchmarkAddDel measures one ADD and one DEL of an attachment with ten
// mappings against ctltest (in-process forwarder, listeners verified):
// the plugin's own cost per container start and stop, store included.
func BenchmarkAddDel(b *testing.B) {
	runVerbs(b, func(x *bench, conf []byte, i int) {
		x.must("ADD", "c1", conf)
		x.must("DEL", "c1", conf)
	})
}

// BenchmarkAddRepeat measures an ADD that finds everything in place.
func BenchmarkAddRepeat(b *testing.B) {
	runVerbs(b, func(x *bench, conf []byte, i int) { x.must("ADD", "c1", conf) })
}

// BenchmarkCheck measures CHECK of an attachment with ten mappings.
func BenchmarkCheck(b *testing.B) {
	runVerbs(b, func(x *bench, conf []byte, i int) { x.must("CHECK", "c1", conf) })
}

func runVerbs(b *testing.B, fn func(x *bench, conf []byte, i int)) {
	x := newBench(b)
	p := freePorts(b, 10)
	var ms []translate.PortMapping
	for i := 0; i < 10; i++ {
		ms = append(ms, tcp(p+uint16(i), uint16(8000+2*i))) // not compactable: ten rules
	}
	conf := x.conf(`"timeout":"10s"`, ms...)
	x.must("ADD", "c1", conf)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		fn(x, conf, i)
	}
	b.StopTimer()
	if got := len(x.host()); got != 10 && got != 0 {
		b.Fatalf("%d rules after the benchmark: %v", got, x.host())
	}
}
