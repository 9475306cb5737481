// Package pastatest runs the real passt/pasta forwarder for tests, the way
// net/http/httptest runs an HTTP server: a fresh network namespace, a pasta
// attached to it with a control socket, servers inside the namespace and
// clients on the host's loopback.
//
// Everything it needs (root, the pasta and pesto binaries) is required, not
// optional: when something is missing the test fails with a message that
// says how to get it. It never skips, so a machine that cannot run the real
// forwarder cannot pass the integration tests by accident.
//
// The binaries come from $PASST_BIN_DIR, else from the cache directory that
// scripts/fetch-pasta.sh fills ($PASST_CACHE/bin, else
// $XDG_CACHE_HOME/passt-portmap/bin, else ~/.cache/passt-portmap/bin).
package pastatest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Bins returns the paths of the pasta and pesto executables to test with.
// It fails the test when they cannot be found or the test does not run as
// root (pasta attached to a namespace made with `ip netns add` needs root).
func Bins(t testing.TB) (pasta, pesto string) {
	t.Helper()
	requireRoot(t)
	dir, err := binDir()
	if err != nil {
		t.Fatalf("pastatest: %v", err)
	}
	pasta = filepath.Join(dir, "pasta")
	pesto = filepath.Join(dir, "pesto")
	for _, p := range []string{pasta, pesto} {
		if err := isExecutable(p); err != nil {
			t.Fatalf("pastatest: the real forwarder is needed and %v; "+
				"run `scripts/fetch-pasta.sh` and export PASST_BIN_DIR=<the directory it prints> "+
				"(scripts/test.sh does both)", err)
		}
	}
	return pasta, pesto
}

// BinDir returns the directory Bins looks in, without checking it.
func BinDir() string {
	dir, err := binDir()
	if err != nil {
		return ""
	}
	return dir
}

func binDir() (string, error) {
	if d := os.Getenv("PASST_BIN_DIR"); d != "" {
		return d, nil
	}
	if c := os.Getenv("PASST_CACHE"); c != "" {
		return filepath.Join(c, "bin"), nil
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "passt-portmap", "bin"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("PASST_BIN_DIR is not set and there is no home directory for the default cache: %w", err)
	}
	return filepath.Join(home, ".cache", "passt-portmap", "bin"), nil
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s is missing: %w", path, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("pastatest: this test drives the real pasta in network namespaces and must run as root " +
			"(use scripts/test.sh as root, or `sudo -E go test ./integration/...`)")
	}
}

// Version returns the first line of `pasta --version`, e.g.
// "pasta 0.0~git20261002.cba3570-1".
func Version(t testing.TB) string {
	t.Helper()
	pasta, _ := Bins(t)
	out, err := exec.Command(pasta, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("pastatest: %s --version: %v: %s", pasta, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "pasta ") {
			return strings.TrimSpace(line)
		}
	}
	return strings.TrimSpace(string(out))
}

// uniqueName returns prefix followed by 8 random hex digits: names of
// namespaces and directories that do not collide between parallel tests,
// packages and people on one machine.
func uniqueName(prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; keep a usable name anyway.
		return fmt.Sprintf("%s%d", prefix, os.Getpid())
	}
	return prefix + hex.EncodeToString(b[:])
}

// TempDir makes a directory under /tmp, its name starting with prefix,
// that is removed when the test ends. Unlike t.TempDir its path is
// short: a UNIX socket path must fit in 108 bytes, and test names can be
// long.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatalf("pastatest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Logf("pastatest: removing %s: %v", dir, err)
		}
	})
	return dir
}
