package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/ctlclient"
	"github.com/passt-portmap/passt-portmap/pkg/ctlclient/ctltest"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// TestCompilerExpands: ranges and several protocols per mapping become
// one entry per port and protocol, compacted back into range rules, and
// errors name the caller's mapping, not the expanded entry.
func TestCompilerExpands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ms    []Mapping
		rules []string
		err   string
	}{
		{"one port, default protocol", []Mapping{{HostPort: 8080, ContainerPort: 80}}, []string{"TCP [*]:8080  =>  80"}, ""},
		{"range over two protocols", []Mapping{{HostIP: "127.0.0.1", HostPort: 9000, ContainerPort: 90, Range: 3, Protocols: []string{"tcp", "UDP"}}},
			[]string{"TCP [127.0.0.1]:9000-9002  =>  90-92", "UDP [127.0.0.1]:9000-9002  =>  90-92"}, ""},
		{"range 1 is one port", []Mapping{{HostPort: 53, ContainerPort: 53, Range: 1, Protocols: []string{"udp"}}}, []string{"UDP [*]:53  =>  53"}, ""},
		{"a bad second mapping is named", []Mapping{{HostPort: 1, ContainerPort: 1, Range: 5}, {HostPort: 7, ContainerPort: 7, Protocols: []string{"sctp"}}},
			nil, "portMappings[1].protocol: unsupported protocol \"sctp\""},
		{"a range past the last port", []Mapping{{HostPort: 65535, ContainerPort: 80, Range: 2}}, nil, "portMappings[0].hostPort: port out of range"},
		{"a negative range", []Mapping{{HostPort: 80, ContainerPort: 80, Range: -1}}, nil, "range -1"},
		{"a conflict names both mappings", []Mapping{{HostPort: 100, ContainerPort: 100, Range: 10}, {HostPort: 105, ContainerPort: 1, Range: 2, Protocols: []string{"tcp", "udp"}}},
			nil, "entry 1"},
	} {
		c, err := newCompiler(tc.ms, &Options{})
		var rules []wire.Rule
		if err == nil {
			rules, err = c.rules(allCaps)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var got []string
		for _, r := range rules {
			got = append(got, strings.TrimSpace(r.String()))
		}
		if !slices.Equal(got, tc.rules) {
			t.Errorf("%s: rules %q, want %q", tc.name, got, tc.rules)
		}
	}
}

// freePort returns a port that listens on neither loopback address now,
// with the next n-1 free as well.
func freePort(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := base+n < 65000
		for p := base; p < base+n && ok; p++ {
			for _, nw := range []string{"tcp", "udp"} {
				if nw == "tcp" {
					l, err := net.Listen(nw, fmt.Sprintf("127.0.0.1:%d", p))
					if ok = err == nil; ok {
						l.Close()
					}
				} else {
					c, err := net.ListenPacket(nw, fmt.Sprintf("127.0.0.1:%d", p))
					if ok = ok && err == nil; err == nil {
						c.Close()
					}
				}
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestAddDelRange: the core on its own, as a netavark front end calls
// it: a range over TCP and UDP is added as two range rules that listen,
// recorded, repeated without change, refused when another client holds a
// rule byte for byte, and removed again by Del.
func TestAddDelRange(t *testing.T) {
	srv := ctltest.NewServer(t, ctltest.DefaultTables())
	var warnings []string
	c := &Core{Warn: func(m string) { warnings = append(warnings, m) }, Client: func(socket, pidFile string) *ctlclient.Client {
		return &ctlclient.Client{Path: socket, PIDFile: pidFile, ListenWait: ListenWait,
			ListenAddrs: func(_ string, r wire.Rule) []netip.Addr { return ctltest.ListenAddrs(r) }}
	}}
	o := Options{DataDir: t.TempDir(), Socket: srv.Path, Verify: true}
	k := Key{Network: "net", ContainerID: "c1", IfName: "eth0"}
	p := freePort(t, 3)
	ms := []Mapping{{HostIP: "127.0.0.1", HostPort: p, ContainerPort: 80, Range: 3, Protocols: []string{"tcp", "udp"}}}
	ctx := context.Background()

	res, err := c.Add(ctx, k, o, ms)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if len(res.Rules) != 2 || res.Socket != srv.Path || res.Network != nil {
		t.Fatalf("Add result %+v", res)
	}
	host := srv.Tables().Lookup(wire.PifHost)
	for _, r := range res.Rules {
		if !host.Contains(r.Rule) || r.Rule.Ports() != 3 {
			t.Errorf("rule %s: in the table %v, ports %d", r, host.Contains(r.Rule), r.Rule.Ports())
		}
	}
	before := srv.Stats()
	if _, err := c.Add(ctx, k, o, ms); err != nil {
		t.Fatalf("Add again: %v", err)
	}
	if srv.Stats().Updates != before.Updates {
		t.Errorf("a repeated Add sent an update")
	}
	if err := c.Check(ctx, k, o, ms); err != nil {
		t.Errorf("Check: %v", err)
	}

	// Another attachment asking for the same rule, which it does not own.
	k2 := Key{Network: "net", ContainerID: "c2", IfName: "eth0"}
	_, err = c.Add(ctx, k2, o, ms)
	var d *Error
	if d = Describe(err, nil); d == nil || d.Kind != KindSafeFail || !errors.Is(err, translate.ErrConflict) || !strings.Contains(d.Details, "does not own it") {
		t.Fatalf("Add of another's rule: %v (%+v)", err, d)
	}
	if err := c.Del(ctx, k2, o, ms); err != nil {
		t.Fatalf("Del after a refused Add: %v", err)
	}
	if host := srv.Tables().Lookup(wire.PifHost); !host.Contains(res.Rules[0].Rule) {
		t.Fatal("Del after a refused Add removed the owner's rule")
	}

	if err := c.Del(ctx, k, o, nil); err != nil {
		t.Fatalf("Del: %v", err)
	}
	for _, r := range res.Rules {
		if srv.Tables().Lookup(wire.PifHost).Contains(r.Rule) {
			t.Errorf("rule %s left after Del", r)
		}
	}
	if err := c.Check(ctx, k, o, ms); Describe(err, nil) == nil || Describe(err, nil).Kind != KindCheckFailed {
		t.Errorf("Check after Del: %v", err)
	}
}
