package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fixture is a checked directory and, outside it, a file and a directory
// that plants point to.
type fixture struct {
	d                *Dir
	outFile, outDir  string
	outLinked        string
	outContents      map[string]string
	outDirEntries    []string
	outLinkedContent string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(base, "outside")
	if err := os.MkdirAll(filepath.Join(out, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{outFile: filepath.Join(out, "file"), outDir: filepath.Join(out, "dir"), outLinked: filepath.Join(out, "linked")}
	for _, p := range []string{f.outFile, f.outLinked, filepath.Join(f.outDir, "inner")} {
		if err := os.WriteFile(p, []byte("precious "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	f.d = d
	return f
}

// unchanged fails the test when anything outside changed.
func (f *fixture) unchanged(t *testing.T) {
	t.Helper()
	for _, p := range []string{f.outFile, f.outLinked, filepath.Join(f.outDir, "inner")} {
		if b, err := os.ReadFile(p); err != nil || string(b) != "precious "+p {
			t.Errorf("%s changed: %q, %v", p, b, err)
		}
	}
	ents, err := os.ReadDir(f.outDir)
	if err != nil || len(ents) != 1 {
		t.Errorf("%s changed: %v, %v", f.outDir, ents, err)
	}
}

var plants = []struct {
	name  string
	what  string // in the refusal
	plant func(f *fixture, path string) error
}{
	{"symlink to a file", "symbolic link", func(f *fixture, p string) error { return os.Symlink(f.outFile, p) }},
	{"dangling symlink", "symbolic link", func(f *fixture, p string) error { return os.Symlink(f.outFile+".none", p) }},
	{"symlink to a directory", "symbolic link", func(f *fixture, p string) error { return os.Symlink(f.outDir, p) }},
	{"hard link", "hard links", func(f *fixture, p string) error { return os.Link(f.outLinked, p) }},
	{"FIFO", "FIFO", func(_ *fixture, p string) error { return unix.Mkfifo(p, 0o600) }},
	{"socket", "socket", func(_ *fixture, p string) error {
		ln, err := net.Listen("unix", p)
		if err != nil {
			return err
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		return ln.Close()
	}},
	{"directory", "directory", func(_ *fixture, p string) error { return os.Mkdir(p, 0o700) }},
}

// Every way of using a file refuses what is not a regular file of ours
// with one link, at once (a FIFO does not block), naming it, and changes
// nothing outside through it.
func TestFilesRefused(t *testing.T) {
	ops := map[string]func(d *Dir, name string) error{
		"read": func(d *Dir, n string) error { _, err := d.ReadFile(n, 100); return err },
		"open rw": func(d *Dir, n string) error {
			f, err := d.OpenFile(n, unix.O_RDWR|unix.O_CREAT, 0o600)
			closeIf(f)
			return err
		},
		"truncate": func(d *Dir, n string) error {
			f, err := d.OpenFile(n, unix.O_WRONLY|unix.O_TRUNC, 0)
			closeIf(f)
			return err
		},
		"replace": func(d *Dir, n string) error { return d.WriteAtomic(n, ".tmp-", []byte("x"), 0o600, true) },
		"check":   func(d *Dir, n string) error { return d.RegularOrMissing(n) },
	}
	for _, p := range plants {
		for name, op := range ops {
			t.Run(p.name+"/"+name, func(t *testing.T) {
				f := newFixture(t)
				if err := p.plant(f, f.d.Join("x")); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- op(f.d, "x") }()
				var err error
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("blocked")
				}
				var ue *UnsafeError
				if !errors.As(err, &ue) || ue.Path != f.d.Join("x") || !strings.Contains(ue.What, p.what) {
					t.Fatalf("%v, want an *UnsafeError naming %s and saying %q", err, f.d.Join("x"), p.what)
				}
				f.unchanged(t)
			})
		}
	}
}

func closeIf(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// A directory that is not a real one of ours is refused by Sub; a
// missing one is made with create.
func TestSubRefused(t *testing.T) {
	for _, p := range plants {
		if p.name == "directory" {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			f := newFixture(t)
			if err := p.plant(f, f.d.Join("sub")); err != nil {
				t.Fatal(err)
			}
			_, err := f.d.Sub("sub", true, 0o700)
			var ue *UnsafeError
			if !errors.As(err, &ue) || ue.Path != f.d.Join("sub") {
				t.Fatalf("Sub: %v, want an *UnsafeError naming %s", err, f.d.Join("sub"))
			}
			f.unchanged(t)
		})
	}
	f := newFixture(t)
	if err := os.Mkdir(f.d.Join("open"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.d.Join("open"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Sub("open", false, 0); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Sub of a directory others can write: %v", err)
	}
	if _, err := f.d.Sub("none", false, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Sub of a missing directory: %v, want fs.ErrNotExist", err)
	}
	s, err := f.d.Sub("made", true, 0o700)
	if err != nil {
		t.Fatalf("Sub with create: %v", err)
	}
	s.Close()
	for _, n := range []string{"", ".", "..", "a/b"} {
		if _, err := f.d.Sub(n, true, 0o700); err == nil {
			t.Errorf("Sub(%q) accepted", n)
		}
	}
}

// Open refuses a data directory that is a link or that others can write
// to; the path to it may hold links.
func TestOpen(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(base, "link")); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open of a link: %v", err)
	}
	if err := os.Mkdir(filepath.Join(real, "in"), 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := Open(filepath.Join(base, "link", "in"))
	if err != nil {
		t.Fatalf("Open through a link on the way: %v", err)
	}
	d.Close()
	if err := os.Chmod(real, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(real); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Open of a directory others can write: %v", err)
	}
}

// RemoveAll removes whatever is planted by its name, a directory with its
// contents, never what a link points to.
func TestRemoveAll(t *testing.T) {
	f := newFixture(t)
	sub, err := f.d.Sub("sub", true, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range plants {
		if err := p.plant(f, sub.Join(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	sub.Close()
	if err := f.d.RemoveAll("sub"); err != nil {
		t.Fatalf("RemoveAll: %v", err)
	}
	if ok, err := f.d.Exists("sub"); ok || err != nil {
		t.Fatalf("sub after RemoveAll: %v, %v", ok, err)
	}
	f.unchanged(t)
	if err := f.d.RemoveAll("none"); err != nil {
		t.Errorf("RemoveAll of nothing: %v", err)
	}
}

// WriteAtomic replaces a regular file, ReadFile reads it back, and a
// file longer than the limit is an error.
func TestWriteRead(t *testing.T) {
	f := newFixture(t)
	for _, s := range []string{"one", "two, longer"} {
		if err := f.d.WriteAtomic("f", ".f.tmp-", []byte(s), 0o600, true); err != nil {
			t.Fatal(err)
		}
		if b, err := f.d.ReadFile("f", 100); err != nil || string(b) != s {
			t.Fatalf("ReadFile = %q, %v; want %q", b, err, s)
		}
	}
	if _, err := f.d.ReadFile("f", 3); err == nil {
		t.Error("ReadFile past the limit: no error")
	}
	names, err := f.d.Names()
	if err != nil || !slices.Equal(names, []string{"f"}) {
		t.Errorf("Names = %v, %v; want only f (no temporary file left)", names, err)
	}
	if _, err := f.d.ReadFile("none", 1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}

// ReadFrom visits every entry once, a few at a time, from positions that
// stay valid between calls.
func TestReadFrom(t *testing.T) {
	f := newFixture(t)
	want := map[string]bool{}
	for i := range 50 {
		n := fmt.Sprintf("e%02d", i)
		want[n] = true
		if err := os.WriteFile(f.d.Join(n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	off := int64(0)
	for calls := 0; ; calls++ {
		if calls > 100 {
			t.Fatal("no end")
		}
		es, end, err := f.d.ReadFrom(off, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > 4 {
			t.Fatalf("%d entries, asked for 4", len(es))
		}
		for _, e := range es {
			if seen[e.Name] {
				t.Fatalf("%s twice", e.Name)
			}
			seen[e.Name] = true
			off = e.Next
		}
		if end {
			break
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("saw %d entries, want %d", len(seen), len(want))
	}
}
