#!/usr/bin/env bash
# test.sh: the project's whole test, as root:
#   0. install the Debian packages and Go modules the tests need
#      (scripts/deps.sh; nothing when they are there already);
#   1. get the real pasta and pesto (scripts/fetch-pasta.sh) and export
#      PASST_BIN_DIR for the integration tests; get the real netavark
#      (scripts/fetch-netavark.sh) and export NETAVARK_BIN_DIR; get
#      critest and crane (scripts/fetch-critest.sh, built once from the Go
#      module proxy and cached) and export CRITEST_BIN_DIR; make (once)
#      the Debian unstable root with Podman 5 (scripts/sidroot.sh) and
#      export PODMAN5_ROOT for integration/podman5;
#   2. go vet ./...;
#   3. go test ./... (unit tests, and the integration tests that drive the
#      plugin through libcni, Podman 4 and 5, netavark and containerd
#      against the real pasta in network namespaces; TestCritest runs
#      Kubernetes' critest and compares its results with the README's);
#   4. the CNI conformance report, compared with docs/conformance.md;
#   5. the README's demo (scripts/demo.sh: cnitool and the plugin);
#   6. every fuzz target for a short time, one target per go test run.
# Steps 2-6 all run even when one fails, so one run shows every failure;
# it exits non-zero when any step failed, and at once when the forwarder
# cannot be had: nothing is skipped. A Podman 5 root that cannot be made
# fails the run too (and integration/podman5, which then has no root).
#
# Environment:
#   FUZZTIME       time per fuzz target (default 10s; 0 skips fuzzing,
#                  for a quick local run only: CI uses the default)
#   GOTESTFLAGS    extra flags for step 3, e.g. "-race" or "-run TestGC"
#   PASST_CACHE, PASST_VERSION, PASST_FORCE_DOWNLOAD: see fetch-pasta.sh
#   NETAVARK_VERSION: see fetch-netavark.sh
#   SIDROOT_MIRROR, SIDROOT_REBUILD: see sidroot.sh
#   CRITOOLS_VERSION, CRANE_VERSION: see fetch-critest.sh
set -euo pipefail

cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
step() { printf '\n=== %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "test.sh: run as root: the integration tests make network namespaces and run pasta" >&2
	exit 1
fi

step "dependencies"
scripts/deps.sh test
export PATH=/usr/local/go/bin:$PATH

step "forwarder"
bindir=$(scripts/fetch-pasta.sh | tail -n1)
if [ ! -x "$bindir/pasta" ] || [ ! -x "$bindir/pesto" ]; then
	echo "test.sh: no pasta/pesto in '$bindir': the forwarder cannot be had, failing" >&2
	exit 1
fi
export PASST_BIN_DIR=$bindir
passt_version=$("$bindir/pasta" --version 2>/dev/null | grep -m1 '^pasta ' || true)
if [ -z "$passt_version" ]; then
	echo "test.sh: $bindir/pasta does not run" >&2
	exit 1
fi
echo "testing against: $passt_version ($bindir)"

step "netavark"
# The netavark plugin's integration tests run the real netavark.
nvdir=$(scripts/fetch-netavark.sh | tail -n1)
if ! netavark_version=$("$nvdir/netavark" --version 2>/dev/null); then
	echo "test.sh: no runnable netavark in '$nvdir': failing" >&2
	exit 1
fi
export NETAVARK_BIN_DIR=$nvdir
echo "testing against: $netavark_version ($nvdir)"

step "critest"
# Kubernetes' CRI validation suite and crane, for integration/critest.
crdir=$(scripts/fetch-critest.sh | tail -n1)
if [ ! -x "$crdir/critest" ] || [ ! -x "$crdir/crane" ]; then
	echo "test.sh: no critest/crane in '$crdir': failing" >&2
	exit 1
fi
export CRITEST_BIN_DIR=$crdir
echo "testing with: critest $("$crdir/critest" -version 2>/dev/null | sed -n 's/^critest version: //p') ($crdir)"

failed=()
step "Podman 5 root (scripts/sidroot.sh)"
# integration/podman5 runs Debian unstable's Podman 5 in it.
start=$(date +%s)
if p5root=$(scripts/sidroot.sh | tail -n1) && [ -x "$p5root/usr/bin/podman" ]; then
	export PODMAN5_ROOT=$p5root
	echo "testing against: $(sed -n 's/.*\(podman [^ ]*\).*/\1/p' "$(dirname "$p5root")/installed") in $p5root ($(($(date +%s) - start))s)"
else
	echo "test.sh: the Podman 5 root cannot be made: integration/podman5 will fail" >&2
	failed+=("podman5 root")
fi

step "go vet ./..."
go vet ./... || failed+=("go vet")

step "go test ./..."
# shellcheck disable=SC2086 # GOTESTFLAGS is a list of flags
go test -count=1 -timeout 15m ${GOTESTFLAGS:-} ./... || failed+=("go test")

step "CNI conformance (scripts/conformance.sh --report --check)"
# The suite on passt-portmap and Debian's reference plugins; fails when a
# result differs from the committed docs/conformance.md.
scripts/conformance.sh --report --check || failed+=("conformance")

# fuzz PKG DIR TARGET: run one fuzz target for $fuzztime. Go 1.26's fuzz
# coordinator can end a duration-bounded run with a bare "context deadline
# exceeded" and no failing input when workers are starved at the deadline
# (golang/go#75804, fixed in Go 1.27). Such a run is tried once more; a
# failure that writes a failing input under testdata/fuzz always counts.
fuzz() {
	local pkg=$1 dir=$2 target=$3 try out before after
	for try in 1 2; do
		before=$(find "$dir/testdata/fuzz/$target" -type f 2>/dev/null | wc -l)
		if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1); then
			echo "$out" | tail -n 1
			return 0
		fi
		echo "$out" | grep -v '^fuzz: elapsed' | tail -n 20
		after=$(find "$dir/testdata/fuzz/$target" -type f 2>/dev/null | wc -l)
		if [ "$after" != "$before" ] || ! echo "$out" | grep -q '^    context deadline exceeded$'; then
			return 1
		fi
		echo "($target: the Go fuzz deadline race, no failing input written; try $try of 2)"
	done
	echo "($target: counted as passed: two deadline races and no failing input)"
}

step "the README's demo (scripts/demo.sh)"
if demo_out=$(scripts/demo.sh 2>&1); then
	echo "$demo_out" | grep -E '^(Hello|CHECK:|port [0-9]+ no longer answers)'
else
	echo "$demo_out" | tail -n 40
	failed+=("demo")
fi

if [ "$fuzztime" != 0 ]; then
	step "fuzz targets, $fuzztime each"
	n=0
	for pkg in $(go list ./...); do
		dir=$(go list -f '{{.Dir}}' "$pkg")
		for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
			echo "--- $pkg $target"
			fuzz "$pkg" "$dir" "$target" || failed+=("fuzz $target")
			n=$((n + 1))
		done
	done
	echo "fuzzed $n targets"
fi

if [ ${#failed[@]} -gt 0 ]; then
	step "FAILED against $passt_version: ${failed[*]}"
	exit 1
fi
step "passed against $passt_version"
