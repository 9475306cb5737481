package netavark

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestMappings(t *testing.T) {
	tests := []struct {
		name string
		in   PortMapping
		want Mapping
		err  string // substring of the error; "" means valid
	}{
		{"single tcp", PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", Range: 1},
			Mapping{HostPort: 8080, ContainerPort: 80, Range: 1, Protocols: []string{"tcp"}}, ""},
		{"range 0 is 1", PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "udp"},
			Mapping{HostPort: 8080, ContainerPort: 80, Range: 1, Protocols: []string{"udp"}}, ""},
		{"empty protocol is tcp", PortMapping{HostPort: 1, ContainerPort: 1},
			Mapping{HostPort: 1, ContainerPort: 1, Range: 1, Protocols: []string{"tcp"}}, ""},
		{"tcp,udp with a range", PortMapping{HostPort: 19690, ContainerPort: 5000, Protocol: "tcp,udp", Range: 3, HostIP: "127.0.0.1"},
			Mapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 19690, ContainerPort: 5000, Range: 3, Protocols: []string{"tcp", "udp"}}, ""},
		{"case and spaces, repeats once", PortMapping{HostPort: 1, ContainerPort: 2, Protocol: "UDP, tcp,udp"},
			Mapping{HostPort: 1, ContainerPort: 2, Range: 1, Protocols: []string{"udp", "tcp"}}, ""},
		{"ipv6 host_ip", PortMapping{HostPort: 1, ContainerPort: 2, HostIP: "::1"},
			Mapping{HostIP: netip.MustParseAddr("::1"), HostPort: 1, ContainerPort: 2, Range: 1, Protocols: []string{"tcp"}}, ""},
		{"last port 65535", PortMapping{HostPort: 65534, ContainerPort: 65533, Range: 2},
			Mapping{HostPort: 65534, ContainerPort: 65533, Range: 2, Protocols: []string{"tcp"}}, ""},
		{"host range past 65535", PortMapping{HostPort: 65535, ContainerPort: 80, Range: 2}, Mapping{}, "host_port 65535 with range 2: the last port would be 65536"},
		{"container range past 65535", PortMapping{HostPort: 80, ContainerPort: 65000, Range: 1000}, Mapping{}, "container_port 65000 with range 1000"},
		{"host_port 0", PortMapping{HostPort: 0, ContainerPort: 80}, Mapping{}, "host_port 0"},
		{"container_port 70000", PortMapping{HostPort: 80, ContainerPort: 70000}, Mapping{}, "container_port 70000"},
		{"negative range", PortMapping{HostPort: 80, ContainerPort: 80, Range: -1}, Mapping{}, "range -1"},
		{"huge range", PortMapping{HostPort: 1, ContainerPort: 1, Range: 70000}, Mapping{}, "range 70000"},
		{"sctp", PortMapping{HostPort: 1, ContainerPort: 1, Protocol: "tcp,sctp"}, Mapping{}, "sctp cannot be forwarded"},
		{"bogus", PortMapping{HostPort: 1, ContainerPort: 1, Protocol: "bogus"}, Mapping{}, `"bogus" is not a protocol`},
		{"empty in a list", PortMapping{HostPort: 1, ContainerPort: 1, Protocol: "tcp,"}, Mapping{}, "empty name"},
		{"host_ip not an address", PortMapping{HostPort: 1, ContainerPort: 1, HostIP: "localhost"}, Mapping{}, `host_ip "localhost": not an IP address`},
		{"host_ip with a zone", PortMapping{HostPort: 1, ContainerPort: 1, HostIP: "fe80::1%eth0"}, Mapping{}, "zone"},
		{"host_ip multicast", PortMapping{HostPort: 1, ContainerPort: 1, HostIP: "224.0.0.1"}, Mapping{}, "multicast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Mappings([]PortMapping{{HostPort: 1, ContainerPort: 1}, tt.in})
			if tt.err != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != "port_mappings[1]" || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Mappings(%+v) = %v, want port_mappings[1]: ...%s", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mappings(%+v): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got[1], tt.want) {
				t.Errorf("Mappings(%+v) = %+v, want %+v", tt.in, got[1], tt.want)
			}
		})
	}
}
