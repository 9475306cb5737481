package forwarder

import (
	"errors"

	current "github.com/containernetworking/cni/pkg/types/100"
)

// ReadResult describes what pasta configured in the namespace cfg.NetNS,
// as a CNI result (CNIVersion current.ImplementedSpecVersion; convert it
// with GetAsVersion). It is read back through netlink inside the
// namespace:
//   - Interfaces: one, the interface pasta made (cfg.IfName, or the only
//     non-loopback interface when cfg.IfName is empty), with its MAC and
//     Sandbox = cfg.NetNS.
//   - IPs: its global IPv4 and IPv6 addresses with their prefix length
//     (link-local ones left out); Gateway is the gateway of the default
//     route of the same family, if any.
//   - Routes: the routes on that interface that have a gateway (the
//     default routes pasta copies from the host, and any other route with
//     a next hop), in the main table.
//   - DNS: the nameservers and search list pasta itself announced at start
//     (pasta's "DNS:" and "DNS search list:" lines, recorded by Ensure in
//     cfg.Dir when it started pasta): the host's resolv.conf, with a
//     loopback resolver replaced by the address mapped to the host
//     (pasta's own rule), or what --dns/--search in cfg.Args said. pasta
//     does not write resolv.conf into the namespace; the runtime uses this.
//     Empty when that record is missing.
func ReadResult(cfg Config) (*current.Result, error) {
	return nil, errors.New("forwarder: ReadResult not implemented")
}
