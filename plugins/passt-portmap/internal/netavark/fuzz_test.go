package netavark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// repeats reports whether a list of protocols names one twice (in any
// case): tcp and udp, each at most once, are all a mapping can have.
func repeats(ps []string) bool {
	seen := map[string]bool{}
	for _, p := range ps {
		p = strings.ToLower(p)
		if p == "" {
			p = "tcp"
		}
		if seen[p] {
			return true
		}
		seen[p] = true
	}
	return false
}

// FuzzDecodeExec feeds setup's decoder arbitrary input. Whatever it
// accepts must survive a round trip through netavark's own JSON shape
// unchanged, and validated mappings must hold what Mapping promises. The
// whole command must answer with exactly a StatusBlock or exactly
// netavark's error JSON. Seeds (testdata/fuzz/FuzzDecodeExec) include the
// input netavark 1.17.2 really sent.
func FuzzDecodeExec(f *testing.F) {
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := DecodeExec(in)
		if err != nil {
			if _, ok := err.(*attach.ConfigError); !ok {
				t.Fatalf("error %T %v is not a *attach.ConfigError", err, err)
			}
			if _, code := render(err); code != 7 {
				t.Fatalf("a decoding error exits %d, not 7: %v", code, err)
			}
		} else {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", e, err)
			}
			again, err := DecodeExec(b)
			if err != nil {
				t.Fatalf("decode of the re-encoded %s: %v", b, err)
			}
			if !reflect.DeepEqual(e, again) {
				t.Fatalf("round trip:\n  %+v\n->%+v", e, again)
			}
			ms := mappings(e.PortMappings)
			if err := attach.CheckMappings(ms); err == nil {
				for i, m := range ms {
					n := max(m.Range, 1)
					if m.HostPort < 1 || m.ContainerPort < 1 || m.Range < 0 ||
						m.HostPort+n-1 > 65535 || m.ContainerPort+n-1 > 65535 || len(m.Protocols) > 2 && !repeats(m.Protocols) {
						t.Fatalf("mapping %d from %+v passed the check: %+v", i, e.PortMappings[i], m)
					}
				}
			} else {
				var me *attach.MappingError
				if !errors.As(err, &me) || me.Index < 0 || me.Index >= len(ms) {
					t.Fatalf("CheckMappings: %v, want a MappingError naming one of %d mappings", err, len(ms))
				}
			}
		}

		var out bytes.Buffer
		p := &Plugin{Backend: &fakeBackend{}, Stdout: &out, Stderr: &bytes.Buffer{}}
		code := p.Run(context.Background(), []string{"setup", "/ns"}, bytes.NewReader(in))
		dec := json.NewDecoder(&out)
		dec.DisallowUnknownFields()
		if code == 0 {
			var sb StatusBlock
			if err := dec.Decode(&sb); err != nil || sb.Interfaces == nil {
				t.Fatalf("exit 0 and stdout %q: %v", out.String(), err)
			}
		} else {
			var je jsonError
			if err := dec.Decode(&je); err != nil || je.Error == "" {
				t.Fatalf("exit %d and stdout %q: %v", code, out.String(), err)
			}
		}
		if dec.More() {
			t.Fatalf("more than one answer on stdout: %q", out.String())
		}
	})
}

// FuzzParseOptions feeds a network's options (a JSON object of strings,
// as create and setup get them) to the driver's decoding and the core's
// check. Whatever the options: no panic; a refusal exits 7 naming one
// option as network.options.KEY; accepted options pass the core's check
// again and read the same a second time.
// Seeds: testdata/fuzz/FuzzParseOptions.
func FuzzParseOptions(f *testing.F) {
	f.Add([]byte(`{"weak":"true","timeout":"3s","pastaArgs":"--mtu 1500","mapHostLoopback":"169.254.1.2"}`))
	f.Add([]byte(`{"pastaArgs":"[\"-q\",\"--dns-host\",\"::1\"]","verify":"no"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var opts map[string]string
		if json.Unmarshal(b, &opts) != nil {
			return
		}
		o, err := ParseOptions(opts)
		if err != nil {
			msg, code := render(err)
			if code != 7 || !strings.Contains(msg, "network.options.") {
				t.Fatalf("ParseOptions(%q): exit %d, %q", opts, code, msg)
			}
			return
		}
		again := o
		if err := again.Check(); err != nil || o.Timeout <= 0 {
			t.Fatalf("accepted %+v: %v", o, err)
		}
		if o2, err := ParseOptions(opts); err != nil || !reflect.DeepEqual(o, o2) {
			t.Fatalf("read twice: %+v, then %+v, %v", o, o2, err)
		}
	})
}
