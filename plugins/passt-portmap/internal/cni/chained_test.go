package cni

import (
	"os"
	"strings"
	"testing"
)

const k8sArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1"

// Under a CRI runtime the plugin alone would hand Kubernetes the node's
// address as the pod IP: ADD is refused before anything starts, naming
// chained mode; DEL (of a pod an older plugin served) still works.
func TestManagedAloneUnderKubernetes(t *testing.T) {
	b := newBench(t)
	conf := b.conf(`"socket":null,"pasta":"/bin/true"`, tcp(freePorts(t, 1), 80))
	_, err := b.callArgs("ADD", "c1", k8sArgs, conf)
	if err == nil || err.Code != 7 {
		t.Fatalf("ADD: %v, want code 7", err)
	}
	for _, want := range []string{"cannot be a Kubernetes pod network", `{"type": "passt-portmap", "capabilities": {"portMappings": true}}`, "in place of portmap"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err.Error(), want)
		}
	}
	if des, _ := os.ReadDir(b.dataDir); len(des) != 0 {
		t.Errorf("a refused ADD left %v", des)
	}
	if _, err := b.callArgs("DEL", "c1", k8sArgs, conf); err != nil {
		t.Errorf("DEL: %v", err)
	}
	// Without the Kubernetes arguments (Podman, cnitool) the same
	// configuration is managed: it gets past the policy to the forwarder.
	if _, err := b.callArgs("ADD", "c2", "", conf); err == nil || err.Code == 7 {
		t.Errorf("ADD without CRI arguments: %v, want the managed forwarder's failure (/bin/true is no pasta)", err)
	}
}

// A previous result whose interfaces are all outside the container is no
// pod network to chain to; a chained attachment refuses the keys that
// have no meaning there, naming them.
func TestChainedRefusals(t *testing.T) {
	b := newBench(t)
	hostOnly := `{"cniVersion":"1.1.0","interfaces":[{"name":"veth9"}],"ips":[{"address":"10.88.0.2/16"}]}`
	b.mustFail("ADD", "c1", b.conf(`"socket":null,"pasta":"/bin/true","prevResult":`+hostOnly, tcp(freePorts(t, 1), 80)), 7,
		`the previous result names interface "veth9" but none in the container's namespace`)
	pod := `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/c1"}],"ips":[{"address":"10.88.0.2/16","interface":0}]}`
	for key, extra := range map[string]string{
		"targetAddress":   `"targetAddress":"10.88.0.2"`,
		"loopbackToHost":  `"loopbackToHost":true`,
		"mapHostLoopback": `"mapHostLoopback":"169.254.1.2"`,
		"pastaArgs[0]":    `"pastaArgs":["--mtu","1400"]`,
	} {
		b.mustFail("ADD", "c1", b.conf(`"socket":null,"pasta":"/bin/true",`+extra+`,"prevResult":`+pod, tcp(freePorts(t, 1), 80)), 7,
			"configuration key "+key)
	}
}
