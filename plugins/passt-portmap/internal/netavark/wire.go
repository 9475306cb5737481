package netavark

// The plugin API's JSON, as netavark 1.17.2 writes it for setup and
// teardown and as it reads the StatusBlock back (its src/network/types.rs
// serialized with serde). Optional fields arrive as explicit nulls.

// APIVersion is the plugin API version that info reports.
const APIVersion = "1.0.0"

// Exec is the input of setup and teardown (netavark's NetworkPluginExec).
type Exec struct {
	ContainerID    string            `json:"container_id"`
	ContainerName  string            `json:"container_name"`
	PortMappings   []PortMapping     `json:"port_mappings"`
	Network        Network           `json:"network"`
	NetworkOptions PerNetworkOptions `json:"network_options"`
}

// PortMapping is one entry of port_mappings: Range ports from HostPort
// and ContainerPort on, for each protocol of Protocol ("tcp", "udp",
// "sctp" or several of them joined by commas; "" is tcp). HostIP "" is
// every address; Range 0 is 1, as netavark's own drivers take it.
type PortMapping struct {
	ContainerPort int    `json:"container_port"`
	HostIP        string `json:"host_ip"`
	HostPort      int    `json:"host_port"`
	Protocol      string `json:"protocol"`
	Range         int    `json:"range"`
}

// Network is the network's configuration (netavark's Network). Options
// carries the keys of "podman network create -o KEY=VALUE".
type Network struct {
	DNSEnabled        bool              `json:"dns_enabled"`
	Driver            string            `json:"driver"`
	ID                string            `json:"id"`
	Internal          bool              `json:"internal"`
	IPv6Enabled       bool              `json:"ipv6_enabled"`
	Name              string            `json:"name"`
	NetworkInterface  *string           `json:"network_interface"`
	Options           map[string]string `json:"options"`
	IPAMOptions       map[string]string `json:"ipam_options"`
	Subnets           []Subnet          `json:"subnets"`
	Routes            []Route           `json:"routes"`
	NetworkDNSServers []string          `json:"network_dns_servers"`
}

// Subnet is one of the network's subnets.
type Subnet struct {
	Gateway    *string     `json:"gateway"`
	LeaseRange *LeaseRange `json:"lease_range"`
	Subnet     string      `json:"subnet"`
}

// LeaseRange limits the addresses leased from a subnet.
type LeaseRange struct {
	StartIP *string `json:"start_ip"`
	EndIP   *string `json:"end_ip"`
}

// Route is a static route of the network.
type Route struct {
	Gateway     string  `json:"gateway"`
	Destination string  `json:"destination"`
	Metric      *uint32 `json:"metric"`
}

// PerNetworkOptions are the container's options for this network.
type PerNetworkOptions struct {
	Aliases       []string          `json:"aliases"`
	InterfaceName string            `json:"interface_name"`
	StaticIPs     []string          `json:"static_ips"`
	StaticMAC     *string           `json:"static_mac"`
	Options       map[string]string `json:"options"`
}

// StatusBlock is setup's answer: what the container's namespace got.
// netavark prints it back to Podman as {"NETWORK": StatusBlock}; Podman
// shows it in inspect and writes dns_server_ips into resolv.conf.
type StatusBlock struct {
	DNSSearchDomains []string                `json:"dns_search_domains"`
	DNSServerIPs     []string                `json:"dns_server_ips"`
	Interfaces       map[string]NetInterface `json:"interfaces"`
}

// NetInterface is one interface of a StatusBlock.
type NetInterface struct {
	MACAddress string       `json:"mac_address"`
	Subnets    []NetAddress `json:"subnets"`
}

// NetAddress is an address of the interface with its prefix length
// (IPNet, e.g. "10.0.2.15/24") and the gateway of its family, if any.
type NetAddress struct {
	Gateway string `json:"gateway,omitempty"`
	IPNet   string `json:"ipnet"`
}

// Info is info's answer.
type Info struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
}

// jsonError is the only thing on stdout when a command fails. Podman
// decodes it with unknown fields disallowed.
type jsonError struct {
	Error string `json:"error"`
}
