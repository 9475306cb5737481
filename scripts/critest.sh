#!/usr/bin/env bash
# critest.sh: Kubernetes' CRI validation suite (critest) against
# containerd with bridge + host-local + portmap and with bridge +
# host-local + passt-portmap: the test TestCritest of integration/critest,
# as root.
#
#   scripts/critest.sh            run it and compare the results with the
#                                 README's table (what CI does,
#                                 inside `go test ./...`)
#   scripts/critest.sh --report   run it and write the README's table
#
# Either way it fails unless every selected spec passes with
# passt-portmap. It gets critest and crane (scripts/fetch-critest.sh) and
# pasta (scripts/fetch-pasta.sh) first; the Debian packages come from
# scripts/deps.sh. CRITEST_PASST_PORTMAP=PATH tests that passt-portmap
# binary instead of the one built from this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

args=()
case "${1:-}" in
"") ;;
--report) args=(-args -update) ;;
*)
	echo "usage: scripts/critest.sh [--report]" >&2
	exit 2
	;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "critest.sh: run as root: the test runs containerd in a network namespace" >&2
	exit 1
fi

PASST_BIN_DIR=${PASST_BIN_DIR:-$(scripts/fetch-pasta.sh | tail -n1)}
CRITEST_BIN_DIR=${CRITEST_BIN_DIR:-$(scripts/fetch-critest.sh | tail -n1)}
export PASST_BIN_DIR CRITEST_BIN_DIR
exec go test -count=1 -timeout 30m -v -run '^TestCritest$' ./integration/critest "${args[@]}"
