#!/usr/bin/env bash
# deps.sh: install, with apt, the Debian packages the tests or the demo
# need, and download the Go modules. Idempotent: packages already
# installed are not asked for again, and apt-get update runs only when
# something is missing. As root.
#
#   scripts/deps.sh         what scripts/test.sh needs (the default)
#   scripts/deps.sh demo    what scripts/demo.sh needs
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo: `ip netns` (iproute2); verification of the Debian unstable
# packages that fetch-pasta.sh downloads (debian-archive-keyring, gpgv);
# git for `go install` of cnitool.
base=(iproute2 ca-certificates debian-archive-keyring gpgv git)
# The tests, besides: the runtimes that drive the plugin in
# integration/podman and integration/cri (Podman 4.3.1 with conmon, CNI
# backend; containerd 1.6 and runc; Debian's CNI plugins for containerd's
# loopback and as the conformance report's reference bridge, host-local
# and portmap, with the iptables portmap needs); a static busybox for the
# test images; uidmap, slirp4netns and acl for rootless Podman; debootstrap
# for the Debian unstable root that runs Podman 5 (scripts/sidroot.sh); the
# image registry of the critest run (docker-registry).
tests=(podman conmon containerd runc containernetworking-plugins busybox-static
	uidmap slirp4netns acl tar iptables debootstrap docker-registry)

case "${1:-test}" in
demo) want=("${base[@]}") ;;
test) want=("${base[@]}" "${tests[@]}") ;;
*)
	echo "usage: scripts/deps.sh [test|demo]" >&2
	exit 2
	;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: run as root (apt-get install)" >&2
	exit 1
fi

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "deps.sh: no Go toolchain (expected /usr/local/go or in PATH)" >&2; exit 1; }
go mod download
