package cni

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// A configuration that is not JSON never reaches the plugin: skel fails
// to decode it and answers 6 ("failed to decode content" in the CNI
// specification), for every verb, as the README says.
func TestMalformedConfigIsCode6(t *testing.T) {
	env := map[string]string{"CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/pp-none", "CNI_IFNAME": "eth0",
		"CNI_PATH": "/opt/cni/bin", "CNI_NETNS_OVERRIDE": "1"}
	for _, cmd := range []string{"ADD", "DEL", "CHECK", "STATUS", "GC"} {
		for _, stdin := range []string{`{`, `{"cniVersion":"1.1.0","name":`, `not json`, `[]`} {
			e := map[string]string{"CNI_COMMAND": cmd}
			for k, v := range env {
				e[k] = v
			}
			_, err := dispatch(t, e, []byte(stdin))
			if err == nil || err.Code != types.ErrDecodingFailure {
				t.Errorf("%s with %q: %+v, want code 6", cmd, stdin, err)
			}
		}
	}
}

// ADD of a managed attachment whose pasta binary is missing is a
// configuration error (7) naming the key and the path, found before
// anything is recorded; DEL after it succeeds; STATUS says not ready (50).
func TestMissingPasta(t *testing.T) {
	b := newBench(t)
	missing := filepath.Join(t.TempDir(), "no-such-pasta")
	conf := b.conf(`"socket":null,"pasta":"`+missing+`"`, tcp(freePorts(t, 1), 80))
	b.mustFail("ADD", "c1", conf, 7, "pasta", missing)
	if _, err := os.Stat(filepath.Join(b.dataDir, "records")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused ADD recorded something: %v", err)
	}
	b.must("DEL", "c1", conf)
	b.mustFail("STATUS", "", conf, 50, missing)
	// Unset, and not in PATH.
	t.Setenv("PATH", t.TempDir())
	b.mustFail("ADD", "c1", b.conf(`"socket":null`, tcp(freePorts(t, 1), 80)), 7, "pasta", "not set", "PATH")
}
