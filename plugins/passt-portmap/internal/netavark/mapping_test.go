package netavark

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/attach/attachtest"
)

// TestMappings: port_mappings decoded as the core takes them.
func TestMappings(t *testing.T) {
	tests := []struct {
		name string
		in   PortMapping
		want attach.Mapping
	}{
		{"single tcp", PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", Range: 1},
			attach.Mapping{HostPort: 8080, ContainerPort: 80, Range: 1, Protocols: []string{"tcp"}}},
		{"range 0", PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "udp"},
			attach.Mapping{HostPort: 8080, ContainerPort: 80, Protocols: []string{"udp"}}},
		{"no protocol", PortMapping{HostPort: 1, ContainerPort: 1}, attach.Mapping{HostPort: 1, ContainerPort: 1}},
		{"tcp,udp with a range", PortMapping{HostPort: 19690, ContainerPort: 5000, Protocol: "tcp,udp", Range: 3, HostIP: "127.0.0.1"},
			attach.Mapping{HostIP: "127.0.0.1", HostPort: 19690, ContainerPort: 5000, Range: 3, Protocols: []string{"tcp", "udp"}}},
		{"spaces around the names", PortMapping{HostPort: 1, ContainerPort: 2, Protocol: "UDP, tcp,udp"},
			attach.Mapping{HostPort: 1, ContainerPort: 2, Protocols: []string{"UDP", "tcp", "udp"}}},
		{"an empty name in the list", PortMapping{HostPort: 1, ContainerPort: 1, Protocol: "tcp,"},
			attach.Mapping{HostPort: 1, ContainerPort: 1, Protocols: []string{"tcp", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mappings([]PortMapping{tt.in}); !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("mappings(%+v) = %+v, want %+v", tt.in, got[0], tt.want)
			}
		})
	}
}

// portMapping is m as netavark writes it.
func portMapping(m attach.Mapping) map[string]any {
	return map[string]any{"host_port": m.HostPort, "container_port": m.ContainerPort, "host_ip": m.HostIP, "range": m.Range,
		"protocol": strings.Join(m.Protocols, ",")}
}

// TestSetupRefusesMappings: every bad mapping of the core's table, sent
// by netavark, is refused by the core's one check before anything is
// started (the backend is not called), with exit status 7, named by its
// place in port_mappings.
func TestSetupRefusesMappings(t *testing.T) {
	for _, tc := range attachtest.BadMappings() {
		t.Run(tc.Name, func(t *testing.T) {
			in := map[string]any{"container_id": "c1", "network": map[string]any{"name": "n"}, "network_options": map[string]any{"interface_name": "eth0"},
				"port_mappings": []any{portMapping(attachtest.Good), portMapping(tc.Mapping)}}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			code, fb, out, _ := runWith(t, fakeRuntime{forwards: true}, string(b), "setup", "/ns")
			msg := errorOf(t, out)
			want := fmt.Sprintf("setup of container c1 on network n: bad port mapping; port_mappings[1].%s: ", mappingFields[tc.Field])
			if code != 7 || !strings.Contains(msg, want) || !strings.Contains(msg, tc.Why) {
				t.Errorf("exit %d, %q; want 7 and %q ... %q", code, msg, want, tc.Why)
			}
			if strings.Contains(msg, "hostPort") || strings.Contains(msg, "portMappings") {
				t.Errorf("%q names the mapping in CNI's words", msg)
			}
			if len(fb.setups) != 0 {
				t.Errorf("the backend was called with %+v", fb.setups)
			}
		})
	}
}
