package cri_test

import (
	"os"
	"testing"

	"github.com/passt-portmap/passt-portmap/integration/containerdtest"
	"github.com/passt-portmap/passt-portmap/integration/runtimetest"
)

func TestMain(m *testing.M) {
	os.Exit(runtimetest.Main(m, map[string]runtimetest.Sweeper{containerdtest.DirPrefix: containerdtest.Sweep}))
}
