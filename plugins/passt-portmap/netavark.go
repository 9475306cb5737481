package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/netavark"
)

// netavarkBackend carries out netavark's setup and teardown with the
// plugin's verbs: setup is a managed ADD, teardown a DEL.
type netavarkBackend struct {
	stderr io.Writer
}

// outcomeErr is a CNI error whose code becomes the exit status.
type outcomeErr struct{ e *types.Error }

func (o outcomeErr) Error() string {
	if o.e.Details == "" {
		return o.e.Msg
	}
	return o.e.Msg + ": " + o.e.Details
}
func (o outcomeErr) ExitCode() int { return int(o.e.Code) }

func (b netavarkBackend) call(a netavark.Attachment, verb func(*Plugin, *skel.CmdArgs) error, stdout io.Writer) error {
	conf := map[string]any{"cniVersion": "1.1.0", "name": a.Network, "type": "passt-portmap",
		"dataDir": a.Options.DataDir, "timeout": a.Options.Timeout.String(), "weak": a.Options.Weak,
		"verify": a.Options.Verify, "allowChained": false}
	if a.Options.Pasta != "" {
		conf["pasta"] = a.Options.Pasta
	}
	if len(a.Options.PastaArgs) > 0 {
		conf["pastaArgs"] = a.Options.PastaArgs
	}
	if a.Options.Target.IsValid() {
		conf["targetAddress"] = a.Options.Target.String()
	}
	if a.Options.BindInterface != "" {
		conf["bindInterface"] = a.Options.BindInterface
	}
	var pms []translate.PortMapping
	for _, m := range a.Mappings {
		hostIP := ""
		if m.HostIP.IsValid() {
			hostIP = m.HostIP.String()
		}
		for _, proto := range m.Protocols {
			for i := 0; i < int(m.Range); i++ {
				pms = append(pms, translate.PortMapping{HostPort: int(m.HostPort) + i, ContainerPort: int(m.ContainerPort) + i, Protocol: proto, HostIP: hostIP})
			}
		}
	}
	conf["runtimeConfig"] = map[string]any{"portMappings": pms}
	stdin, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	p := &Plugin{Stdout: stdout, Stderr: b.stderr}
	err = verb(p, &skel.CmdArgs{ContainerID: a.ContainerID, Netns: a.Netns, IfName: a.IfName, StdinData: stdin})
	var te *types.Error
	if errors.As(err, &te) {
		return outcomeErr{te}
	}
	return err
}

func (b netavarkBackend) Setup(_ context.Context, a netavark.Attachment) (netavark.Configured, error) {
	var out bytes.Buffer
	if err := b.call(a, (*Plugin).Add, &out); err != nil {
		// netavark tears down only the networks whose setup succeeded.
		if derr := b.call(a, (*Plugin).Del, io.Discard); derr != nil {
			fmt.Fprintf(b.stderr, "passt-portmap: cleaning up after the failed setup: %v\n", derr)
		}
		return netavark.Configured{}, err
	}
	var res current.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return netavark.Configured{}, fmt.Errorf("read back the network: %w", err)
	}
	var c netavark.Configured
	if len(res.Interfaces) > 0 {
		c.IfName, c.MAC = res.Interfaces[0].Name, res.Interfaces[0].Mac
	}
	for _, ip := range res.IPs {
		addr, _ := netip.AddrFromSlice(ip.Address.IP)
		ones, _ := ip.Address.Mask.Size()
		addr = addr.Unmap()
		c.Addrs = append(c.Addrs, netip.PrefixFrom(addr, ones))
		if gw, ok := netip.AddrFromSlice(ip.Gateway); ok {
			if gw = gw.Unmap(); gw.Is4() {
				c.Gateway4 = gw
			} else {
				c.Gateway6 = gw
			}
		}
	}
	for _, s := range res.DNS.Nameservers {
		if a, err := netip.ParseAddr(s); err == nil {
			c.DNS = append(c.DNS, a)
		}
	}
	c.Search = res.DNS.Search
	return c, nil
}

func (b netavarkBackend) Teardown(_ context.Context, a netavark.Attachment) error {
	return b.call(a, (*Plugin).Del, io.Discard)
}
