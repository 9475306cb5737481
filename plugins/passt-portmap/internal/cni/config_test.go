package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
	"github.com/passt-portmap/passt-portmap/pkg/attach/attachtest"
)

var testEnv = Env{ContainerID: "c0ffee", IfName: "eth0", Netns: "/run/netns/pp-ns"}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"pasta-ports","type":"passt-portmap",
		"socket":"/run/passt/${CNI_CONTAINERID}.sock","capabilities":{"portMappings":true},"someFutureKey":[1,2]}`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Managed || !reflect.DeepEqual(c.Options, attach.Options{Timeout: attach.DefaultTimeout, Verify: true}) ||
		c.PrevResult != nil || c.Network != "pasta-ports" || c.CNIVersion != "1.1.0" {
		t.Errorf("defaults: %+v", c)
	}
	s, p, err := resolveSocket(c, testEnv)
	if err != nil || s != "/run/passt/c0ffee.sock" || p != "" {
		t.Errorf("resolveSocket = %q %q %v", s, p, err)
	}
}

func TestParseConfigAll(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","socket":"/run/${CNI_NETNS}/${CNI_IFNAME}.sock",
		"pidFile":"/run/${CNI_NETNS}.pid","weak":true,"targetAddress":"10.0.2.15","bindInterface":"eth1","timeout":"250ms",
		"dataDir":"/tmp/x/../y","verify":false,
		"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]},
		"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.2.15/24","interface":0}]}}`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 53, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"}}
	if len(c.Mappings) != 2 || c.Mappings[0] != want[0] || c.Mappings[1] != want[1] {
		t.Errorf("mappings %+v", c.Mappings)
	}
	if o := c.Options; !o.Weak || o.TargetAddress != netip.MustParseAddr("10.0.2.15") || o.BindInterface != "eth1" ||
		o.Timeout != 250*time.Millisecond || o.DataDir != "/tmp/y" || o.Verify || c.PrevResult == nil {
		t.Errorf("parsed %+v", c)
	}
	s, p, err := resolveSocket(c, testEnv)
	if err != nil || s != "/run/pp-ns/eth0.sock" || p != "/run/pp-ns.pid" {
		t.Errorf("resolveSocket = %q %q %v", s, p, err)
	}
}

func TestParseConfigModes(t *testing.T) {
	for _, tc := range []struct {
		name, conf, args string
		managed          bool
		socket           string
	}{
		{"socket absent", `{"name":"n"}`, "", true, ""},
		{"forwarder managed", `{"name":"n","forwarder":"managed","pasta":"/usr/bin/pasta","pastaArgs":["--map-guest-addr","169.254.1.2"],"allowChained":true}`, "", true, ""},
		{"socket", `{"name":"n","socket":"/s"}`, "", false, "/s"},
		{"CNI_ARGS overrides", `{"name":"n","socket":"/s"}`, "IgnoreUnknown=1;PASST_SOCKET=/other.sock", false, "/other.sock"},
		{"CNI_ARGS over managed", `{"name":"n"}`, "PASST_SOCKET=/o.sock", false, "/o.sock"},
		{"CNI_ARGS other keys", `{"name":"n","socket":"/s"}`, "K8S_POD_NAME=x;junk", false, "/s"},
	} {
		env := testEnv
		env.Args = tc.args
		c, err := ParseConfig([]byte(tc.conf), env)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.Managed != tc.managed || c.Socket != tc.socket {
			t.Errorf("%s: managed %v socket %q, want %v %q", tc.name, c.Managed, c.Socket, tc.managed, tc.socket)
		}
	}
	c, err := ParseConfig([]byte(`{"name":"n","pasta":"/p","pastaArgs":["-a","192.0.2.9"],"allowChained":true}`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Options.Pasta != "/p" || strings.Join(c.Options.PastaArgs, " ") != "-a 192.0.2.9" || !c.Options.AllowChained {
		t.Errorf("managed keys: %+v", c)
	}
}

func TestParseConfigSide(t *testing.T) {
	c, err := ParseConfig([]byte(`{"name":"n","sideInterface":"side0","sideTable":7,"sideNetwork":"fd00:1::/112, 169.254.9.0/29"}`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := attach.SideOptions{IfName: "side0", Table: 7, Network4: netip.MustParsePrefix("169.254.9.0/29"), Network6: netip.MustParsePrefix("fd00:1::/112")}
	if c.Options.Side != want {
		t.Errorf("side %+v, want %+v", c.Options.Side, want)
	}
	c, err = ParseConfig([]byte(`{"name":"n"}`), testEnv)
	if err != nil || c.Options.Side != (attach.SideOptions{}) {
		t.Errorf("defaults: %+v %v", c.Options.Side, err)
	}
}

func TestParseConfigKubernetes(t *testing.T) {
	for _, tc := range []struct {
		args string
		want bool
	}{
		{"", false},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u", true},
		{"K8S_POD_NAMESPACE=default", false},
		{"K8S_POD_NAME=web-0", false},
	} {
		env := testEnv
		env.Args = tc.args
		c, err := ParseConfig([]byte(`{"name":"n"}`), env)
		if err != nil || c.Kubernetes != tc.want {
			t.Errorf("%q: Kubernetes %v %v, want %v", tc.args, c.Kubernetes, err, tc.want)
		}
	}
}

// prior reads what a previous result says earlier plugins made: which
// interfaces are in the container and the families of its addresses
// (the host side's are not the pod's).
func TestPrior(t *testing.T) {
	for _, tc := range []struct {
		name, prev string
		want       string
	}{
		{"none", ``, "<nil>"},
		{"bridge, IPv4", `{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/p"}],"ips":[{"address":"10.88.0.2/16","interface":2}]}`,
			"&{Interfaces:[{Name:cni0 Sandbox:false} {Name:veth1 Sandbox:false} {Name:eth0 Sandbox:true}] IPv4:true IPv6:false}"},
		{"dual-stack", `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/p"}],"ips":[{"address":"10.88.0.2/16","interface":0},{"address":"fd00::2/64","interface":0}]}`,
			"&{Interfaces:[{Name:eth0 Sandbox:true}] IPv4:true IPv6:true}"},
		{"an IPv6 address of the host side only", `{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/p"}],"ips":[{"address":"10.88.0.2/16","interface":1},{"address":"fd00::1/64","interface":0}]}`,
			"&{Interfaces:[{Name:br0 Sandbox:false} {Name:eth0 Sandbox:true}] IPv4:true IPv6:false}"},
		{"an address without an interface", `{"cniVersion":"1.0.0","ips":[{"address":"fd00::2/64"}]}`, "&{Interfaces:[] IPv4:false IPv6:true}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := `{"name":"n","cniVersion":"1.0.0"}`
			if tc.prev != "" {
				conf = `{"name":"n","cniVersion":"1.0.0","prevResult":` + tc.prev + `}`
			}
			c, err := ParseConfig([]byte(conf), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			p := prior(c.PrevResult)
			got := "<nil>"
			if p != nil {
				got = fmt.Sprintf("%+v", p)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestParseConfigErrors: what the CNI front end decodes itself, its own
// keys and the JSON types, is code 7 naming the key as the configuration
// writes it.
func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		conf, args string
		key, msg   string
	}{
		{`[]`, "", "(configuration)", "not a JSON object"},
		{`{"cniVersion":"1.1.0"}`, "", "name", "missing network name"},
		{`{"name":"n","cniVersion":"one"}`, "", "cniVersion", "one"},
		{`{"name":"n","socket":5}`, "", "socket", "got a JSON number, want a string"},
		{`{"name":"n","socket":"relative.sock"}`, "", "socket", "not an absolute path"},
		{`{"name":"n","socket":""}`, "", "socket", "empty path"},
		{`{"name":"n","socket":"/run/${CNI_POD}.sock"}`, "", "socket", "unknown placeholder ${CNI_POD}"},
		{`{"name":"n","socket":"/s","pidFile":"/run/${X"}`, "", "pidFile", "unknown placeholder ${X"},
		{`{"name":"n","socket":"/s"}`, "PASST_SOCKET=rel", "CNI_ARGS PASST_SOCKET", "not an absolute path"},
		{`{"name":"n","forwarder":"external"}`, "", "forwarder", `"external" is not a forwarder mode`},
		{`{"name":"n","forwarder":"managed","socket":"/s"}`, "", "socket", "cannot be combined"},
		{`{"name":"n","pidFile":"/p"}`, "", "pidFile", "managed forwarder"},
		{`{"name":"n","weak":"yes"}`, "", "weak", "got a JSON string, want true or false"},
		{`{"name":"n","verify":1}`, "", "verify", "want true or false"},
		{`{"name":"n","allowChained":"true"}`, "", "allowChained", "want true or false"},
		{`{"name":"n","loopbackToHost":"yes"}`, "", "loopbackToHost", "want true or false"},
		{`{"name":"n","pastaArgs":"--x"}`, "", "pastaArgs", "want a list"},
		{`{"name":"n","mapHostLoopback":true}`, "", "mapHostLoopback", "want a string"},
		{`{"name":"n","timeout":5}`, "", "timeout", "want a string"},
		{`{"name":"n","sideTable":"7"}`, "", "sideTable", "want an integer"},
		{`{"name":"n","runtimeConfig":[]}`, "", "runtimeConfig", "want an object"},
		{`{"name":"n","runtimeConfig":{"portMappings":{}}}`, "", "runtimeConfig.portMappings", "want a list"},
		{`{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80},{"hostPort":"80"}]}}`, "", "runtimeConfig.portMappings[1].hostPort", "want an integer"},
		{`{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":80.5}]}}`, "", "runtimeConfig.portMappings[0].hostPort", "want an integer"},
		{`{"name":"n","runtimeConfig":{"portMappings":[7]}}`, "", "runtimeConfig.portMappings[0]", "want an object"},
		{`{"name":"n","cniVersion":"1.0.0","prevResult":{"cniVersion":"1.0.0","ips":"x"}}`, "", "prevResult", ""},
		{`{"name":"n","cni.dev/valid-attachments":{}}`, "", "cni.dev/valid-attachments", "want a list"},
	} {
		env := testEnv
		env.Args = tc.args
		_, err := ParseConfig([]byte(tc.conf), env)
		var ce *attach.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: error %v, want a ConfigError", tc.conf, err)
			continue
		}
		if ce.Key != tc.key || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s:\n got key %q: %v\nwant key %q with %q", tc.conf, ce.Key, err, tc.key, tc.msg)
		}
		if e := toCNI(err); e.Code != 7 || !strings.Contains(e.Details, "configuration key "+tc.key+": ") {
			t.Errorf("%s: CNI error %+v, want code 7 naming %s", tc.conf, e, tc.key)
		}
	}
}

// confOf writes what in sets as the configuration's keys.
func confOf(in attach.Input) string {
	m := map[string]any{"name": "n"}
	for k, v := range attachtest.Texts(in) {
		m[k] = v
	}
	if in.PastaArgs != nil {
		m["pastaArgs"] = in.PastaArgs
	}
	if in.SideTable != nil {
		m["sideTable"] = *in.SideTable
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestParseConfigRefused: every bad value of the core's table, written
// as a configuration key, is refused by the core's one check and named as
// the configuration names it (and the pastaArgs entry).
func TestParseConfigRefused(t *testing.T) {
	for _, tc := range attachtest.BadSettings() {
		t.Run(tc.Name, func(t *testing.T) {
			conf := confOf(tc.Input)
			_, err := ParseConfig([]byte(conf), testEnv)
			var ce *attach.ConfigError
			if !errors.As(err, &ce) || ce.Setting != tc.Setting {
				t.Fatalf("%s: %v, want the core's refusal of %v", conf, err, tc.Setting)
			}
			want := "configuration key " + tc.Setting.String()
			if tc.Entry >= 0 {
				want += fmt.Sprintf("[%d]", tc.Entry)
			}
			if e := toCNI(err); e.Code != 7 || !strings.Contains(e.Details, want+": ") || !strings.Contains(e.Details, tc.Why) {
				t.Errorf("%s: CNI error %+v, want code 7, %q and %q", conf, e, want, tc.Why)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		env  Env
		want string
		err  string
	}{
		{"/run/${CNI_CONTAINERID}/${CNI_IFNAME}.sock", testEnv, "/run/c0ffee/eth0.sock", ""},
		{"/run/${CNI_NETNS}.sock", Env{Netns: "/proc/123/ns/net"}, "/run/net.sock", ""},
		{"/run/${CNI_NETNS}.sock", Env{Netns: "/var/run/netns/cni-1234"}, "/run/cni-1234.sock", ""},
		{"/run/${CNI_NETNS}.sock", Env{}, "", "placeholder ${CNI_NETNS} has no value"},
		{"/run/${CNI_CONTAINERID}.sock", Env{ContainerID: ".."}, "", "not a file name"},
		{"/run/fixed.sock", Env{}, "/run/fixed.sock", ""},
	} {
		got, err := expand("socket", tc.tmpl, tc.env)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("expand(%q, %+v) = %q, %v; want error %q", tc.tmpl, tc.env, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expand(%q, %+v) = %q, %v; want %q", tc.tmpl, tc.env, got, err, tc.want)
		}
	}
	if !hasPlaceholders("/a/${CNI_IFNAME}") || hasPlaceholders("/a/b") {
		t.Error("HasPlaceholders")
	}
}

// prevResult is checked against types.PluginConf as a decoding of the
// whole configuration would: its other fields are type-checked, and keys
// match ignoring case.
func TestParseConfigPluginConf(t *testing.T) {
	prev := `"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]}`
	for _, tc := range []struct{ conf, err string }{
		{`{"cniVersion":"1.0.0","name":"n",` + prev + `}`, ""},
		{`{"cniVersion":"1.0.0","name":"n","capabilities":{"portMappings":true},"ipam":{},"dns":{},` + prev + `}`, ""},
		{`{"cniVersion":"1.0.0","name":"n","capabilities":"x",` + prev + `}`, "prevResult.capabilities"},
		{`{"cniVersion":"1.0.0","name":"n","Capabilities":"x",` + prev + `}`, "prevResult.capabilities"},
		{`{"cniVersion":"1.0.0","name":"n","Capabilities":"x"}`, ""},
	} {
		c, err := ParseConfig([]byte(tc.conf), testEnv)
		if tc.err == "" {
			if err != nil || strings.Contains(tc.conf, "prevResult") && c.PrevResult == nil {
				t.Errorf("%s: %v", tc.conf, err)
			}
			continue
		}
		var ce *attach.ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.err {
			t.Errorf("%s: error %v, want key %s", tc.conf, err, tc.err)
		}
	}
}

// BenchmarkParseConfig10000 parses a configuration of 10,000 mappings
// (about 870 KB, as the whole-process benchmark sends) with a prevResult.
func BenchmarkParseConfig10000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"cniVersion":"1.0.0","name":"bench","type":"passt-portmap","socket":"/run/p.sock","capabilities":{"portMappings":true},`)
	sb.WriteString(`"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"198.18.0.2/15","interface":0}]},`)
	sb.WriteString(`"runtimeConfig":{"portMappings":[`)
	for i := range 10000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"hostPort":%d,"containerPort":%d,"protocol":"tcp","hostIP":"127.0.0.1"}`, 20000+i, 20000+i)
	}
	sb.WriteString(`]}}`)
	conf := []byte(sb.String())
	b.SetBytes(int64(len(conf)))
	for b.Loop() {
		c, err := ParseConfig(conf, testEnv)
		if err != nil || len(c.Mappings) != 10000 {
			b.Fatal(err)
		}
	}
}

// FuzzConfigPaths: wherever the one typed pass takes a configuration, the
// raw pass that names errors takes it too, with the same mappings, so the
// two can never disagree on what a configuration means.
// Seeds: testdata/fuzz/FuzzConfigPaths.
func FuzzConfigPaths(f *testing.F) {
	f.Add([]byte(`{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}],"x":null}}`))
	f.Fuzz(func(t *testing.T, conf []byte) {
		var typed typedConf
		if json.Unmarshal(conf, &typed) != nil {
			return
		}
		var raw rawConf
		if err := json.Unmarshal(conf, &raw); err != nil {
			t.Fatalf("typed pass took %q, raw pass: %v", conf, err)
		}
		if (typed.RuntimeConfig == nil) != (raw.RuntimeConfig == nil) {
			t.Fatalf("%q: runtimeConfig typed %v, raw %v", conf, typed.RuntimeConfig, raw.RuntimeConfig)
		}
		if typed.RuntimeConfig == nil {
			return
		}
		ms, err := decodeMappings(raw.RuntimeConfig.PortMappings)
		if err != nil || !slices.Equal(ms, typed.RuntimeConfig.PortMappings) {
			t.Fatalf("%q: mappings typed %+v, raw %+v, %v", conf, typed.RuntimeConfig.PortMappings, ms, err)
		}
	})
}
