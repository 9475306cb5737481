package netavark

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

func TestDecodeCaptured(t *testing.T) {
	b, err := os.ReadFile("testdata/setup-1.17.2.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeExec(b)
	if err != nil {
		t.Fatalf("DecodeExec: %v", err)
	}
	want := &Exec{
		ContainerID:   "6e4c…b4c5",
		ContainerName: "nvspike-ctr",
		PortMappings: []PortMapping{
			{ContainerPort: 80, HostPort: 19680, Protocol: "tcp", Range: 1},
			{ContainerPort: 5000, HostIP: "127.0.0.1", HostPort: 19690, Protocol: "tcp,udp", Range: 3},
		},
		Network: Network{DNSEnabled: true, Driver: "nvspikeplug", ID: "138a…c565", Name: "nvspikenet",
			Options: map[string]string{"custom": "opt"},
			Subnets: []Subnet{{Gateway: ptr("10.99.0.1"), Subnet: "10.99.0.0/24"}}},
		NetworkOptions: PerNetworkOptions{Aliases: []string{"nvspike-ctr"}, InterfaceName: "eth0", StaticIPs: []string{"10.99.0.2"}},
	}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("DecodeExec:\n got %+v\nwant %+v", e, want)
	}
	ms := mappings(e.PortMappings)
	if err := attach.CheckMappings(ms); err != nil {
		t.Fatalf("CheckMappings: %v", err)
	}
	if len(ms) != 2 || ms[1].Range != 3 || !reflect.DeepEqual(ms[1].Protocols, []string{"tcp", "udp"}) || ms[1].HostIP != "127.0.0.1" || ms[0].HostIP != "" {
		t.Errorf("mappings = %+v", ms)
	}
}

func ptr[T any](v T) *T { return &v }

// minimal is the least input setup takes.
const minimal = `{"container_id":"c1","network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`

func TestDecodeExecErrors(t *testing.T) {
	tests := []struct {
		name, in, field, msg string
	}{
		{"not json", `{`, "stdin", "not a JSON object"},
		{"null", `null`, "stdin", "null"},
		{"a list", `[]`, "stdin", "not a JSON object"},
		{"trailing", minimal + `{}`, "stdin", "follows"},
		{"no container_id", `{"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "container_id", "missing"},
		{"null container_id", `{"container_id":null,"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "container_id", "is null"},
		{"empty container_id", `{"container_id":"","network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "container_id", "empty"},
		{"container_id number", `{"container_id":5,"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "container_id", "want a string, got 5"},
		{"key case matters", `{"Container_ID":"c","network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "container_id", "missing"},
		{"no network", `{"container_id":"c","network_options":{"interface_name":"eth0"}}`, "network", "missing"},
		{"network a string", `{"container_id":"c","network":"n","network_options":{"interface_name":"eth0"}}`, "network", "want an object"},
		{"no network name", `{"container_id":"c","network":{},"network_options":{"interface_name":"eth0"}}`, "network.name", "missing"},
		{"option not a string", `{"container_id":"c","network":{"name":"n","options":{"weak":true}},"network_options":{"interface_name":"eth0"}}`, "network.options.weak", "want a string, got true"},
		{"options a list", `{"container_id":"c","network":{"name":"n","options":[]},"network_options":{"interface_name":"eth0"}}`, "network.options", "want an object"},
		{"internal a string", `{"container_id":"c","network":{"name":"n","internal":"no"},"network_options":{"interface_name":"eth0"}}`, "network.internal", "true or false"},
		{"subnet without subnet", `{"container_id":"c","network":{"name":"n","subnets":[{"gateway":null}]},"network_options":{"interface_name":"eth0"}}`, "network.subnets[0].subnet", "missing"},
		{"dns server number", `{"container_id":"c","network":{"name":"n","network_dns_servers":[1]},"network_options":{"interface_name":"eth0"}}`, "network.network_dns_servers[0]", "want a string"},
		{"no interface_name", `{"container_id":"c","network":{"name":"n"},"network_options":{}}`, "network_options.interface_name", "missing"},
		{"empty interface_name", `{"container_id":"c","network":{"name":"n"},"network_options":{"interface_name":""}}`, "network_options.interface_name", "is empty"},
		{"static_ips null element", `{"container_id":"c","network":{"name":"n"},"network_options":{"interface_name":"eth0","static_ips":[null]}}`, "network_options.static_ips[0]", "want a string"},
		{"port_mappings object", `{"container_id":"c","port_mappings":{},"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "port_mappings", "list of objects"},
		{"mapping null", `{"container_id":"c","port_mappings":[null],"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "port_mappings[0]", "is null"},
		{"host_port string", `{"container_id":"c","port_mappings":[{"container_port":80,"host_port":"80"}],"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "port_mappings[0].host_port", `want an integer, got "80"`},
		{"container_port float", `{"container_id":"c","port_mappings":[{"container_port":80,"host_port":8080},{"container_port":80.5,"host_port":1}],"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "port_mappings[1].container_port", "want an integer, got 80.5"},
		{"no host_port", `{"container_id":"c","port_mappings":[{"container_port":80}],"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "port_mappings[0].host_port", "missing"},
		{"range string", `{"container_id":"c","port_mappings":[{"container_port":80,"host_port":80,"range":"2"}],"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`, "port_mappings[0].range", "integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeExec([]byte(tt.in))
			var ce *attach.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("DecodeExec(%s) = %v, want a *attach.ConfigError", tt.in, err)
			}
			if ce.Key != tt.field || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("DecodeExec(%s) = %q (field %q), want field %q and %q", tt.in, err, ce.Key, tt.field, tt.msg)
			}
			if msg, code := render(err); code != 7 || !strings.Contains(msg, tt.field+": ") {
				t.Errorf("rendered as %q, exit %d; want 7 naming %s", msg, code, tt.field)
			}
		})
	}
}

func TestDecodeExecNulls(t *testing.T) {
	// Every optional field null, and unknown fields: all accepted.
	in := `{"container_id":"c","container_name":null,"port_mappings":null,"future":1,
	"network":{"name":"n","driver":null,"id":null,"dns_enabled":null,"internal":null,"ipv6_enabled":null,
	 "network_interface":null,"options":null,"ipam_options":null,"subnets":null,"routes":null,"network_dns_servers":null,"other":{}},
	"network_options":{"interface_name":"eth0","aliases":null,"static_ips":null,"static_mac":null,"options":null}}`
	e, err := DecodeExec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Exec{ContainerID: "c", Network: Network{Name: "n"}, NetworkOptions: PerNetworkOptions{InterfaceName: "eth0"}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("got %+v, want %+v", e, want)
	}
}

func TestDecodeNetwork(t *testing.T) {
	in := `{"name":"pp","id":"abc","driver":"passt-portmap","created":"2026-11-30T10:00:00Z","options":{"weak":"true"},"labels":{"a":"b"}}`
	n, members, err := DecodeNetwork([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "pp" || n.Driver != "passt-portmap" || n.Options["weak"] != "true" {
		t.Errorf("network = %+v", n)
	}
	if string(members["created"]) != `"2026-11-30T10:00:00Z"` || string(members["labels"]) != `{"a":"b"}` {
		t.Errorf("members not kept: %v", members)
	}
	if _, _, err := DecodeNetwork([]byte(`{"id":"x"}`)); err == nil || !strings.Contains(err.Error(), "name: missing") {
		t.Errorf("no name: %v", err)
	}
}
