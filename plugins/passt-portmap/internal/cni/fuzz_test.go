package cni

import (
	"path/filepath"
	"testing"
)

// FuzzParseConfig: whatever a runtime sends, ParseConfig does not panic,
// and a configuration it accepts is one the verbs can use: a positive
// timeout, an absolute clean data directory or none (the core's default), a socket exactly when not
// managed, and a socket template that expands to an absolute path.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","socket":"/run/${CNI_CONTAINERID}.sock","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"tcp"}]}}`), "")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","weak":true,"targetAddress":"10.0.0.1","bindInterface":"eth0","timeout":"1s","dataDir":"/d","verify":false}`), "PASST_SOCKET=/x.sock")
	f.Add([]byte(`{"name":"n","forwarder":"managed","pasta":"pasta","pastaArgs":["-a"],"allowChained":true}`), "")
	f.Add([]byte(`{"name":"n","cniVersion":"0.4.0","prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.0.0.2/24","interface":0}]}}`), "")
	f.Add([]byte(`{"name":"n","cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]}`), "")
	f.Add([]byte(`{"name":"n","cniVersion":"1.0.0","sideInterface":"pasta0","sideTable":20563,"sideNetwork":"169.254.100.0/30,fd41:e00e:44f8::/64","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.88.0.2/24","interface":1},{"address":"fd88::2/64","interface":1}]}}`), "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p")
	f.Fuzz(func(t *testing.T, conf []byte, args string) {
		env := Env{ContainerID: "c1", IfName: "eth0", Netns: "/run/netns/x", Args: args}
		c, err := ParseConfig(conf, env)
		if err != nil {
			if cerr := toCNI(err); cerr.Code != 7 {
				t.Fatalf("ParseConfig error mapped to code %d: %v", cerr.Code, err)
			}
			return
		}
		o := c.Options
		if o.Timeout <= 0 || o.DataDir != "" && (!filepath.IsAbs(o.DataDir) || filepath.Clean(o.DataDir) != o.DataDir) || c.Network == "" {
			t.Fatalf("accepted %+v", c)
		}
		if err := o.Check(); err != nil {
			t.Fatalf("accepted options the core's check refuses: %v", err)
		}
		if c.Managed == (c.Socket != "") {
			t.Fatalf("managed %v with socket %q", c.Managed, c.Socket)
		}
		if !c.Managed {
			s, _, err := resolveSocket(c, env)
			if err == nil && !filepath.IsAbs(s) {
				t.Fatalf("socket %q expands to %q", c.Socket, s)
			}
		}
	})
}
