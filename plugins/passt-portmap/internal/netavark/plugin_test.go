package netavark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/store"
)

// fakeBackend records the calls and answers as told.
type fakeBackend struct {
	setups, teardowns []Attachment
	err               error
	conf              Configured
}

func (f *fakeBackend) Setup(_ context.Context, a Attachment) (Configured, error) {
	f.setups = append(f.setups, a)
	return f.conf, f.err
}

func (f *fakeBackend) Teardown(_ context.Context, a Attachment) error {
	f.teardowns = append(f.teardowns, a)
	return f.err
}

func run(t *testing.T, b Backend, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	p := &Plugin{Backend: b, Version: "v9", Stdout: &out, Stderr: &errOut}
	code = p.Run(context.Background(), args, strings.NewReader(stdin))
	return code, out.String(), errOut.String()
}

// errorOf decodes stdout as Podman does: exactly {"error": string}.
func errorOf(t *testing.T, stdout string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var e jsonError
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("stdout %q is not netavark's error JSON: %v", stdout, err)
	}
	if dec.More() {
		t.Fatalf("stdout %q: more than the error", stdout)
	}
	return e.Error
}

func captured(t *testing.T) string {
	b, err := os.ReadFile("testdata/setup-1.17.2.json")
	if err != nil {
		t.Fatal(err)
	}
	// The capture's network came from another plugin: its option is not ours.
	return strings.Replace(string(b), `"options":{"custom":"opt"}`, `"options":{"weak":"true","timeout":"3s"}`, 1)
}

func TestSetup(t *testing.T) {
	fb := &fakeBackend{conf: Configured{MAC: "aa:bb:cc:dd:ee:01", Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.2.15/24")}, Gateway4: netip.MustParseAddr("10.0.2.2")}}
	code, out, logs := run(t, fb, captured(t), "setup", "/run/netns/x")
	if code != 0 {
		t.Fatalf("setup: exit %d, stdout %s", code, out)
	}
	// The capture asks for a static address, which pasta cannot give.
	if !strings.Contains(logs, "static addresses and MAC (--ip, --mac-address) are not used") {
		t.Errorf("no word on the ignored static_ips: %q", logs)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var sb StatusBlock
	if err := dec.Decode(&sb); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	// The interface is named by network_options when the backend says nothing.
	if ni, ok := sb.Interfaces["eth0"]; !ok || ni.MACAddress != "aa:bb:cc:dd:ee:01" || len(ni.Subnets) != 1 || ni.Subnets[0].Gateway != "10.0.2.2" {
		t.Errorf("StatusBlock = %+v", sb)
	}
	if len(fb.setups) != 1 {
		t.Fatalf("%d setups", len(fb.setups))
	}
	a := fb.setups[0]
	if a.Network != "nvspikenet" || a.ContainerID != "6e4c…b4c5" || a.IfName != "eth0" || a.Netns != "/run/netns/x" ||
		!a.Options.Weak || a.Options.Timeout.String() != "3s" || len(a.Mappings) != 2 ||
		!reflect.DeepEqual(a.Mappings[1].Protocols, []string{"tcp", "udp"}) {
		t.Errorf("attachment = %+v", a)
	}
}

func TestTeardown(t *testing.T) {
	fb := &fakeBackend{}
	code, out, _ := run(t, fb, captured(t), "teardown", "/run/netns/x")
	if code != 0 || out != "" || len(fb.teardowns) != 1 || fb.teardowns[0].Netns != "/run/netns/x" {
		t.Fatalf("teardown: exit %d, stdout %q, calls %+v", code, out, fb.teardowns)
	}
	// Mappings that setup would refuse, or that cannot even be decoded,
	// do not keep teardown from its work.
	for i, bad := range []string{
		strings.Replace(captured(t), `"protocol":"tcp,udp"`, `"protocol":"sctp"`, 1),
		strings.Replace(captured(t), `"host_port":19680`, `"host_port":"19680"`, 1),
	} {
		code, out, _ := run(t, fb, bad, "teardown", "/run/netns/x")
		if code != 0 || out != "" || len(fb.teardowns) != 2+i || fb.teardowns[1+i].ContainerID != "6e4c…b4c5" {
			t.Errorf("teardown with a bad mapping: exit %d, stdout %q, calls %+v", code, out, fb.teardowns)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		backend error
		stdin   string
		args    []string
		code    int
		msg     string
		calls   int
	}{
		{"no command", nil, "", nil, 1, "no command", 0},
		{"unknown command", nil, "", []string{"frob"}, 1, `unknown command "frob"`, 0},
		{"setup without netns", nil, minimal, []string{"setup"}, 1, "setup: want one argument", 0},
		{"teardown with empty netns", nil, minimal, []string{"teardown", ""}, 1, "teardown: want one argument", 0},
		{"bad JSON", nil, "{", []string{"setup", "/ns"}, 7, "stdin: the plugin input is not a JSON object", 0},
		{"bad mapping", nil, `{"container_id":"c","port_mappings":[{"container_port":80,"host_port":80,"protocol":"sctp"}],"network":{"name":"n"},"network_options":{"interface_name":"eth0"}}`,
			[]string{"setup", "/ns"}, 7, `setup of container c on network n: bad port mapping; port_mappings[0].protocol: unsupported protocol "sctp"`, 0},
		{"bad option", nil, `{"container_id":"c","network":{"name":"n","options":{"timeout":"soon"}},"network_options":{"interface_name":"eth0"}}`,
			[]string{"setup", "/ns"}, 7, "network.options.timeout: ", 0},
		{"bad option at teardown", nil, `{"container_id":"c","network":{"name":"n","options":{"dataDir":"rel"}},"network_options":{"interface_name":"eth0"}}`,
			[]string{"teardown", "/ns"}, 7, `network.options.dataDir: "rel" is not an absolute path`, 0},
		{"empty interface name", nil, `{"container_id":"c","network":{"name":"n"},"network_options":{"interface_name":""}}`,
			[]string{"setup", "/ns"}, 7, "network_options.interface_name: is empty", 0},
		{"empty interface name at teardown", nil, `{"container_id":"c","network":{"name":"n"},"network_options":{"interface_name":""}}`,
			[]string{"teardown", "/ns"}, 7, "network_options.interface_name: is empty", 0},
		{"core refuses an empty key part", &store.KeyError{Part: "interface", Why: "is empty"}, minimal, []string{"setup", "/ns"}, 7, "attachment key: the interface is empty", 1},
		{"backend outcome", &attach.Error{Kind: attach.KindSocketFail, Msg: "host ports could not listen", Details: "port 80"}, minimal, []string{"setup", "/ns"}, 101,
			"setup of container c1 on network n: host ports could not listen; port 80", 1},
		{"backend error", errors.New("boom"), minimal, []string{"teardown", "/ns"}, 1, "teardown of container c1 on network n: passt-portmap failed; boom", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fakeBackend{err: tt.backend}
			code, out, logs := run(t, fb, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if msg := errorOf(t, out); !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q, want %q", msg, tt.msg)
			}
			if !strings.Contains(logs, tt.msg) {
				t.Errorf("stderr %q does not log the error", logs)
			}
			if n := len(fb.setups) + len(fb.teardowns); n != tt.calls {
				t.Errorf("%d backend calls, want %d", n, tt.calls)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	code, out, _ := run(t, nil, "", "info")
	if code != 0 || out != `{"version":"v9","api_version":"1.0.0"}`+"\n" {
		t.Errorf("info: exit %d, %q", code, out)
	}
}

func TestCreate(t *testing.T) {
	in := `{"name":"pp","id":"2f25","driver":"passt-portmap","network_interface":"","created":"2026-11-30T10:00:00.5Z",
	"subnets":[],"ipv6_enabled":false,"internal":false,"dns_enabled":false,"options":{"weak":"true","pastaArgs":"--mtu 1500"},"labels":{"x":"y"}}`
	code, out, _ := run(t, nil, in, "create")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, out)
	}
	var got, want map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("create printed %s, want the input back", out)
	}

	for _, c := range []struct{ name, in, msg string }{
		{"bad option", `{"name":"pp","driver":"passt-portmap","options":{"weak":"maybe"}}`, "network.options.weak"},
		{"unknown option", `{"name":"pp","driver":"passt-portmap","options":{"isolate":"true"}}`, "network.options.isolate: not an option"},
		{"internal", `{"name":"pp","driver":"passt-portmap","internal":true}`, "internal: a passt-portmap network cannot be internal"},
		{"no name", `{"driver":"passt-portmap"}`, "name: missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, _ := run(t, nil, c.in, "create")
			if code != 7 || !strings.Contains(errorOf(t, out), c.msg) {
				t.Errorf("create: exit %d, stdout %s, want %q", code, out, c.msg)
			}
		})
	}
}
