package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/plugins/passt-portmap/internal/cli"
)

// dispatch runs the plugin as its main does, through skel's dispatcher,
// with the environment and stdin of a runtime's call.
func dispatch(t *testing.T, env map[string]string, stdin []byte) (string, *types.Error) {
	t.Helper()
	for _, k := range []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "CNI_NETNS_OVERRIDE"} {
		t.Setenv(k, env[k])
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.Write(stdin); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	var out bytes.Buffer
	// skel prints VERSION's answer to the process's standard output.
	sr, sw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	oldOut := os.Stdout
	os.Stdout = sw
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(sr); done <- b }()
	p := &Plugin{Stdout: &out, Stderr: &out, Client: testClient}
	e := skel.PluginMainFuncsWithError(p.Funcs(), SupportedVersions, About())
	os.Stdout = oldOut
	sw.Close()
	out.Write(<-done)
	sr.Close()
	return out.String(), e
}

// TestDispatch: the verbs through skel, including its version gates:
// STATUS and GC exist from CNI 1.1.0 on, CHECK from 0.4.0.
func TestDispatch(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 1)
	env := map[string]string{"CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/pp-none", "CNI_IFNAME": "eth0",
		"CNI_PATH": "/opt/cni/bin", "CNI_NETNS_OVERRIDE": "1"}
	with := func(cmd string) map[string]string {
		m := map[string]string{"CNI_COMMAND": cmd}
		for k, v := range env {
			m[k] = v
		}
		return m
	}
	conf := b.conf(`"cni.dev/valid-attachments":[]`, tcp(p, 80))
	for _, cmd := range []string{"ADD", "CHECK", "STATUS", "DEL", "GC"} {
		if _, err := dispatch(t, with(cmd), conf); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	for _, tc := range []struct{ cmd, ver string }{{"STATUS", "1.0.0"}, {"GC", "1.0.0"}, {"CHECK", "0.3.1"}, {"ADD", "0.2.0"}} {
		_, err := dispatch(t, with(tc.cmd), b.conf(`"cniVersion":"`+tc.ver+`"`))
		if err == nil || err.Code != types.ErrIncompatibleCNIVersion {
			t.Errorf("%s with cniVersion %s: %v, want code 1", tc.cmd, tc.ver, err)
		}
	}
	// A CNI error of a verb goes out as it is (not wrapped as 999).
	_, err := dispatch(t, with("ADD"), b.conf(`"timeout":"x"`))
	if err == nil || err.Code != 7 || !strings.Contains(err.Details, "timeout") {
		t.Errorf("ADD with a bad timeout: %+v", err)
	}
	// VERSION without input: skel answers with the newest version the
	// plugin speaks and the list of every one, nothing else.
	out, err := dispatch(t, map[string]string{"CNI_COMMAND": "VERSION"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || dec.More() {
		t.Fatalf("VERSION printed %q: %v", out, err)
	}
	if want := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}; v.CNIVersion != "1.1.0" || !slices.Equal(v.SupportedVersions, want) {
		t.Errorf("VERSION: cniVersion %q, supportedVersions %q; want 1.1.0 and %q", v.CNIVersion, v.SupportedVersions, want)
	}
}

func TestShow(t *testing.T) {
	b := newBench(t)
	p := freePorts(t, 2)
	b.must("ADD", "c1", b.conf("", tcp(p, 80), tcp(p+1, 81)))
	b.srv.FailBind(p + 1)
	if err := b.srv.Update(b.srv.Tables()); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cli.Show(context.Background(), &out, b.client(b.srv.Path, "")); err != nil {
		t.Fatal(err)
	}
	t.Logf("show:\n%s", out.String())
	for _, want := range []string{"protocol version 2", "HOST (pif 1", "SPLICE (pif 3", "TCP [*]:" + itoa(p) + "-" + itoa(p+1) + "  =>  80-81", "NOT LISTENING on " + itoa(p+1), "auto-scan, not checked"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show output lacks %q", want)
		}
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
