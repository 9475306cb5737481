package podman

import (
	"strings"
	"testing"
)

// FuzzReservationIn: any document is read without panicking; a value
// found is one the document spells out; an error names a line; appending
// a comment to a document read changes nothing.
// Seeds: testdata/fuzz/FuzzReservationIn.
func FuzzReservationIn(f *testing.F) {
	f.Add([]byte("[engine]\nenable_port_reservation = false\n"))
	f.Add([]byte("[containers]\nx = [\n\"a\",\n\"[engine]\"\n]\n"))
	f.Add([]byte("x = \"\"\"\n[engine]\n\"\"\"\nengine.enable_port_reservation = true"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		val, found, err := reservationIn(doc)
		if err != nil {
			if !strings.Contains(err.Error(), "line ") {
				t.Fatalf("error %q names no line", err)
			}
			return
		}
		if found && !strings.Contains(string(doc), map[bool]string{true: "true", false: "false"}[val]) {
			t.Fatalf("found %v in a document without that word", val)
		}
		v2, f2, err2 := reservationIn(append(append([]byte(nil), doc...), "\n# end\n"...))
		if err2 != nil || v2 != val || f2 != found {
			t.Fatalf("a trailing comment changed the result: %v %v %v -> %v %v %v", val, found, err, v2, f2, err2)
		}
	})
}

// FuzzParseStatPPID: any stat line is read without panicking, and a
// parent PID found is not negative.
func FuzzParseStatPPID(f *testing.F) {
	f.Add([]byte("1234 (passt-portmap) S 987 1234 1 0"))
	f.Add([]byte("1 (a) b)) R 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParseStatPPID(b); err == nil && p < 0 {
			t.Fatalf("negative parent PID %d", p)
		}
	})
}

// FuzzRootlessArg: any command line is read without panicking, and one
// that says true says "--rootless" and a true value.
func FuzzRootlessArg(f *testing.F) {
	f.Add([]byte("netavark\x00--config\x00/r\x00--rootless=true\x00setup\x00/ns\x00"))
	f.Add([]byte("netavark\x00--rootless\x00false\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if RootlessArg(b) && !strings.Contains(string(b), "--rootless") {
			t.Fatalf("rootless without --rootless in %q", b)
		}
	})
}
