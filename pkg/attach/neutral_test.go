package attach_test

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// TestRuntimeNeutral: the core and every package it builds on import no
// runtime's library (CNI's types are the CNI front end's to build): each
// front end renders the core's results and errors in its own format.
func TestRuntimeNeutral(t *testing.T) {
	const module = "github.com/passt-portmap/passt-portmap/"
	seen := map[string]bool{}
	var visit func(dir string)
	visit = func(dir string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		p, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, "github.com/containernetworking/cni"), strings.Contains(imp, "/internal/"):
				t.Errorf("%s imports %s", dir, imp)
			case strings.HasPrefix(imp, module):
				visit(filepath.Join("..", "..", strings.TrimPrefix(imp, module)))
			}
		}
	}
	visit(".")
	if !seen[filepath.Join("..", "..", "pkg", "forwarder")] {
		t.Errorf("the core's imports were not followed: %v", seen)
	}
}
