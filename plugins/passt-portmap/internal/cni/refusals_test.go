package cni

import (
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/attach/attachtest"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// portMapping is m as a CNI runtime writes it; ok is false when CNI's
// mappings cannot say m (a range, several protocols).
func portMapping(m attach.Mapping) (translate.PortMapping, bool) {
	pm := translate.PortMapping{HostPort: m.HostPort, ContainerPort: m.ContainerPort, HostIP: m.HostIP}
	if len(m.Protocols) > 0 {
		pm.Protocol = m.Protocols[0]
	}
	return pm, m.Range == 0 && len(m.Protocols) <= 1
}

// TestAddRefusesMappings: every bad mapping of the core's table that CNI
// can write is refused by the core's one check before the forwarder is
// asked, with code 7, named by its place in runtimeConfig.
func TestAddRefusesMappings(t *testing.T) {
	b := newBench(t)
	good, _ := portMapping(attachtest.Good)
	tried := 0
	for _, tc := range attachtest.BadMappings() {
		bad, ok := portMapping(tc.Mapping)
		if !ok {
			continue
		}
		tried++
		t.Run(tc.Name, func(t *testing.T) {
			want := "configuration key runtimeConfig.portMappings[1]." + tc.Field.String() + ": "
			b.mustFail("ADD", "c1", b.conf("", good, bad), 7, "bad port mapping", want, tc.Why)
		})
	}
	if tried == 0 {
		t.Fatal("no bad mapping CNI can write")
	}
	if n := b.srv.Stats().Conns; n != 0 {
		t.Errorf("the forwarder was contacted %d times for bad mappings", n)
	}
}
