package netavark

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

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
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("error %T %v is not a *FieldError", err, err)
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
			if ms, err := Mappings(e.PortMappings); err == nil {
				for i, m := range ms {
					if m.HostPort == 0 || m.ContainerPort == 0 || m.Range == 0 ||
						int(m.HostPort)+int(m.Range)-1 > 65535 || int(m.ContainerPort)+int(m.Range)-1 > 65535 ||
						len(m.Protocols) == 0 || len(m.Protocols) > 2 {
						t.Fatalf("mapping %d from %+v is not valid: %+v", i, e.PortMappings[i], m)
					}
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
