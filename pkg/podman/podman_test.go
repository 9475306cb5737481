package podman

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReservationIn(t *testing.T) {
	for _, tc := range []struct {
		name, doc      string
		val, found, ok bool
		line           string // the line an error names
	}{
		{"unset", "[engine]\nruntime = \"runc\"\n", false, false, true, ""},
		{"false", "[engine]\nenable_port_reservation = false\n", false, true, true, ""},
		{"true", "[engine]\nenable_port_reservation=true # why\n", true, true, true, ""},
		{"other table", "[network]\nenable_port_reservation = false\n", false, false, true, ""},
		{"subtable", "[engine.runtimes]\nenable_port_reservation = false\n", false, false, true, ""},
		{"dotted key", "engine.enable_port_reservation = false\n", false, true, true, ""},
		{"quoted key and header", "[ \"engine\" ]\n\"enable_port_reservation\" = false\n", false, true, true, ""},
		{"commented out", "[engine]\n#enable_port_reservation = false\n", false, false, true, ""},
		{"header in a multi-line array", "[containers]\nx = [\n\"a\",\n\"[engine]\"\n]\nenable_port_reservation = false\n", false, false, true, ""},
		{"header in a multi-line string", "[containers]\nx = \"\"\"\n[engine]\n\"\"\"\nenable_port_reservation = false\n", false, false, true, ""},
		{"comment sign in a string", "[engine]\nx = \"a#b\" # [\nenable_port_reservation = false\n", false, true, true, ""},
		{"the table twice", "[engine]\nenable_port_reservation = false\n[engine]\nenable_port_reservation = true\n", false, false, false, "line 3"},
		{"the key twice", "[engine]\nenable_port_reservation = false\nenable_port_reservation = true\n", false, false, false, "line 3"},
		{"not a boolean", "[engine]\nenable_port_reservation = \"no\"\n", false, false, false, "line 2"},
		{"engine not a table", "engine = 5\n", false, false, false, "line 1"},
		{"not TOML", "[containers]\nx = 1\n[engine\nenable_port_reservation = false\n", false, false, false, "line 4"}, // the line the header's newline ends
	} {
		t.Run(tc.name, func(t *testing.T) {
			val, found, err := reservationIn([]byte(tc.doc))
			if (err == nil) != tc.ok || val != tc.val || found != tc.found {
				t.Fatalf("reservationIn = %v, %v, %v; want %v, %v, ok %v", val, found, err, tc.val, tc.found, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tc.line) {
				t.Errorf("error %q does not name %s", err, tc.line)
			}
		})
	}
}

func TestParseStatPPID(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want int
		ok   bool
	}{
		{"1234 (passt-portmap) S 987 1234 1 0", 987, true},
		{"1234 (a) b) (c) R 55 1 1", 55, true},
		{"1234 (x) S", 0, false},
		{"1234 x S 5", 0, false},
		{"1234 (x) S -1", 0, false},
	} {
		got, err := ParseStatPPID([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseStatPPID(%q) = %d, %v; want %d, ok %v", tc.stat, got, err, tc.want, tc.ok)
		}
	}
}

// fakeProc makes a proc tree of processes pid -> (comm, ppid).
func fakeProc(t *testing.T, procs map[int][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "comm"), p[0]+"\n")
		write(t, filepath.Join(dir, "stat"), itoa(pid)+" ("+p[0]+") S "+p[1]+" 1 1 0\n")
	}
	return root
}

func TestAncestor(t *testing.T) {
	proc := fakeProc(t, map[int][2]string{
		100: {"passt-portmap", "90"},
		90:  {"sh", "80"},
		80:  {"podman", "1"},
		200: {"passt-portmap", "190"},
		190: {"containerd", "1"},
	})
	for _, tc := range []struct {
		pid, depth, want int
	}{
		{100, 3, 80},
		{100, 1, 0}, // the shell only
		{200, 3, 0},
		{300, 3, 0}, // gone
	} {
		p, ok := Ancestor(proc, tc.pid, tc.depth)
		if ok != (tc.want != 0) || p.PID != tc.want {
			t.Errorf("Ancestor(%d, depth %d) = %+v, %v; want pid %d", tc.pid, tc.depth, p, ok, tc.want)
		}
	}
}

func TestPortReservation(t *testing.T) {
	type files map[string]string
	const share, etc = "/usr/share/containers/containers.conf", "/etc/containers/containers.conf"
	off := "[engine]\nenable_port_reservation = false\n"
	on := "[engine]\nenable_port_reservation = true\n"
	for _, tc := range []struct {
		name    string
		files   files
		env     map[string]string // values are paths under the root
		enabled bool
		source  string
	}{
		{"default", files{share: "[engine]\n#enable_port_reservation = true\n"}, nil, true, ""},
		{"no file at all", files{}, nil, true, ""},
		{"drop-in", files{share: "", etc + ".d/50-passt.conf": off}, nil, false, etc + ".d/50-passt.conf"},
		{"later drop-in wins", files{etc + ".d/50-a.conf": off, etc + ".d/60-b.conf": on}, nil, true, etc + ".d/60-b.conf"},
		{"drop-in without .conf ignored", files{etc + ".d/50-a.toml": off}, nil, true, ""},
		{"etc after share", files{share: off, etc: on}, nil, true, etc},
		{"share drop-in before etc", files{share + ".d/a.conf": off, etc: ""}, nil, false, share + ".d/a.conf"},
		{"CONTAINERS_CONF alone", files{etc + ".d/50-passt.conf": off, "/private.conf": "[network]\n"}, map[string]string{"CONTAINERS_CONF": "/private.conf"}, true, ""},
		{"CONTAINERS_CONF off", files{"/private.conf": off}, map[string]string{"CONTAINERS_CONF": "/private.conf"}, false, "/private.conf"},
		{"override last", files{etc: off, "/o.conf": on}, map[string]string{"CONTAINERS_CONF_OVERRIDE": "/o.conf"}, true, "/o.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tc.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(root, p), c)
			}
			getenv := func(k string) string {
				if v, ok := tc.env[k]; ok {
					return filepath.Join(root, v)
				}
				return ""
			}
			r, err := PortReservation(root, getenv)
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.source != "" {
				want = filepath.Join(root, tc.source)
			}
			if r.Enabled != tc.enabled || r.Source != want {
				t.Fatalf("PortReservation = %+v; want enabled %v from %q", r, tc.enabled, want)
			}
		})
	}
	t.Run("a malformed drop-in", func(t *testing.T) {
		root := t.TempDir()
		dropIn := filepath.Join(root, "/etc/containers/containers.conf.d/50-x.conf")
		if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, dropIn, "[engine]\nenable_port_reservation = flase\n")
		_, err := PortReservation(root, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), dropIn) || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("err = %v, want one naming %s and line 2", err, dropIn)
		}
	})
	t.Run("unreadable CONTAINERS_CONF", func(t *testing.T) {
		_, err := PortReservation(t.TempDir(), func(k string) string {
			if k == "CONTAINERS_CONF" {
				return "/nonexistent/containers.conf"
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/containers.conf") {
			t.Fatalf("err = %v, want one naming the file", err)
		}
	})
}

func TestInUserNamespace(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uidMap string
		want   bool
	}{
		{"         0          0 4294967295\n", false},
		{"         0       1000          1\n         1     100000      65536\n", true},
	} {
		write(t, filepath.Join(proc, "self", "uid_map"), tc.uidMap)
		if got, err := InUserNamespace(proc); err != nil || got != tc.want {
			t.Errorf("InUserNamespace(%q) = %v, %v; want %v", tc.uidMap, got, err, tc.want)
		}
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestVerdict(t *testing.T) {
	reserved := &ReservationError{Podman: Process{PID: 7, Comm: "podman"}}
	unreadable := &os.PathError{Op: "open", Path: "/etc/containers/containers.conf", Err: os.ErrPermission}
	wrapped := fmt.Errorf("while looking: %w", reserved)
	for _, tc := range []struct {
		name          string
		in            error
		refuse, warns error
	}{
		{"none", nil, nil, nil},
		{"reserved", reserved, reserved, nil},
		{"reserved, wrapped", wrapped, wrapped, nil},
		{"configuration unreadable", unreadable, nil, unreadable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refuse, warn := Verdict(tc.in)
			if refuse != tc.refuse || warn != tc.warns {
				t.Fatalf("Verdict(%v) = %v, %v; want %v, %v", tc.in, refuse, warn, tc.refuse, tc.warns)
			}
		})
	}
}
