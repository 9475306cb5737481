#!/usr/bin/env bash
# fetch-critest.sh: build Kubernetes' CRI validation suite (critest, from
# sigs.k8s.io/cri-tools) and crane (the image tool of
# github.com/google/go-containerregistry) once, from the Go module proxy,
# into a cache directory; later runs reuse them.
#
# critest's command is made of test files only, so `go install` refuses
# it: the module's source is downloaded (go mod download), copied to a
# temporary directory (the module cache is read-only) and built there with
# `go test -c`. Nothing of either project is written into this repository.
#
# Prints, as its last line, the directory that holds `critest` and
# `crane`, so callers can do:  CRITEST_BIN_DIR=$(scripts/fetch-critest.sh | tail -n1)
#
# Environment:
#   PASST_CACHE       cache directory (default: $XDG_CACHE_HOME/passt-portmap
#                     or ~/.cache/passt-portmap), shared with fetch-pasta.sh
#   CRITOOLS_VERSION  cri-tools version (default v1.34.0)
#   CRANE_VERSION     go-containerregistry version (default v0.22.1)
set -euo pipefail

critools=${CRITOOLS_VERSION:-v1.34.0}
crane=${CRANE_VERSION:-v0.22.1}
cache=${PASST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passt-portmap}
bindir=$cache/critest/cri-tools-$critools-crane-$crane
log() { echo "fetch-critest: $*" >&2; }

export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false
command -v go >/dev/null || { log "no Go toolchain (expected /usr/local/go or in PATH)"; exit 1; }

if [ -x "$bindir/critest" ] && [ -x "$bindir/crane" ]; then
	log "cached: critest $critools and crane $crane in $bindir"
	echo "$bindir"
	exit 0
fi

mkdir -p "$bindir"
tmp=$(mktemp -d /tmp/fetch-critest-XXXXXX)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

start=$(date +%s)
log "downloading sigs.k8s.io/cri-tools@$critools"
src=$(cd "$tmp" && go mod download -json "sigs.k8s.io/cri-tools@$critools" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src/cmd/critest" ] || { log "no cmd/critest in '$src'"; exit 1; }
cp -r "$src" "$tmp/cri-tools"
chmod -R u+w "$tmp/cri-tools"
log "building critest (go test -c ./cmd/critest)"
(cd "$tmp/cri-tools" && CGO_ENABLED=0 go test -c -trimpath \
	-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$critools" \
	-o "$tmp/critest" ./cmd/critest)

log "building crane $crane (go install)"
GOBIN=$tmp CGO_ENABLED=0 go install -trimpath "github.com/google/go-containerregistry/cmd/crane@$crane"

# Move into place only when both are built, so that a cache directory
# with both binaries is always a complete one.
mv "$tmp/crane" "$bindir/crane"
mv "$tmp/critest" "$bindir/critest"
log "built critest $critools and crane $crane in $(($(date +%s) - start))s"
echo "$bindir"
