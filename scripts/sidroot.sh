#!/usr/bin/env bash
# sidroot.sh: make (once) a Debian unstable root with Podman 5 in it, for
# the tests that drive the plugin through Podman 5 and netavark
# (integration/podman5). Debian 12 has no Podman 5, and unstable's needs
# unstable's libraries: a whole root is the smallest thing that runs it.
#
# `debootstrap --variant=minbase sid`, then, inside the root, unstable's
# podman, netavark, aardvark-dns, crun, conmon, catatonit, passt,
# iproute2, nftables, procps, uidmap and busybox-static. The root is kept
# in the cache directory and used again while it is whole: every package
# installed, podman, netavark and pasta runnable. One that is not (a
# killed build, a removed file) is made again. The system is not changed:
# the build runs in a mount namespace of its own, so the /proc it mounts
# in the root goes with it.
#
# The root is never changed by the tests: they run Podman on an overlay
# whose lower layer it is (integration/podman5).
#
# Prints, as its last line, the root's directory:
#   PODMAN5_ROOT=$(scripts/sidroot.sh | tail -n1)
#
# Environment:
#   PASST_CACHE     cache directory, shared with fetch-pasta.sh (default:
#                   $XDG_CACHE_HOME/passt-portmap or ~/.cache/passt-portmap);
#                   the root goes under its sidroot/ subdirectory
#   SIDROOT_MIRROR  the Debian mirror (default http://deb.debian.org/debian)
#   SIDROOT_REBUILD=1  make the root again even when the cached one is whole
set -euo pipefail

cache=${PASST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passt-portmap}
mirror=${SIDROOT_MIRROR:-http://deb.debian.org/debian}
dir=$cache/sidroot
root=$dir/root
stamp=$dir/installed
packages=(podman netavark aardvark-dns crun conmon catatonit passt iproute2 nftables procps uidmap busybox-static)
log() { echo "sidroot: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "run as root (debootstrap, chroot)"
	exit 1
fi

# inroot ROOT CMD...: run CMD chrooted in ROOT with a /proc, in a mount
# namespace of our own: the kernel unmounts that /proc when the namespace
# ends, whatever happens (podman and pasta need /proc to start).
inroot() {
	unshare --mount --propagation private -- sh -euc 'r=$1; shift; mount -t proc proc "$r/proc"; exec chroot "$r" "$@"' sh "$@"
}

# whole: is the root in $1 complete and runnable? Its package database says
# every package is installed, and the programs the tests run answer.
whole() {
	local r=$1 p status
	[ -f "$r/usr/bin/podman" ] || return 1
	for p in "${packages[@]}"; do
		status=$(chroot "$r" dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || return 1
		[ "$status" = "install ok installed" ] || return 1
	done
	inroot "$r" /usr/bin/podman --version >/dev/null 2>&1 &&
		inroot "$r" /usr/lib/podman/netavark --version >/dev/null 2>&1 &&
		inroot "$r" /usr/bin/pasta --version >/dev/null 2>&1
}

versions() {
	chroot "$1" dpkg-query -W -f='${Package} ${Version}\n' "${packages[@]}" | paste -sd ' '
}

mkdir -p "$dir"
# The lock: the tests hold it shared while they use the root (an overlay's
# lower layer must not change under it), a check takes it shared too, a
# build exclusively: one build at a time, never under a running test.
exec 9>>"$dir/lock"
lock() {
	flock -w 1800 "$1" 9 || {
		log "$dir/lock held for 30 minutes"
		exit 1
	}
}
# cached: print the cached root and exit, when it is whole (and no rebuild
# is asked for).
cached() {
	if [ "${SIDROOT_REBUILD:-0}" != 1 ] && [ -f "$stamp" ] && whole "$root"; then
		log "cached: $root ($(cat "$stamp"))"
		echo "$root"
		exit 0
	fi
}
lock -s
cached
flock -u 9
lock -x
# Another run may have made it meanwhile.
cached

start=$(date +%s)
command -v debootstrap >/dev/null || {
	log "debootstrap is not installed (scripts/deps.sh installs it)"
	exit 1
}
rm -f "$stamp"
new=$dir/root.new
rm -rf "$new"
log "debootstrap --variant=minbase sid $new ($mirror)"
if ! debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
	sid "$new" "$mirror" >"$dir/debootstrap.log" 2>&1; then
	tail -n 20 "$dir/debootstrap.log" >&2
	log "debootstrap failed (whole log: $dir/debootstrap.log)"
	exit 1
fi

# The Release file of unstable, as served here, can be past its
# Valid-Until date.
echo 'Acquire::Check-Valid-Until "false";' >"$new/etc/apt/apt.conf.d/99passt-portmap"
echo "deb $mirror sid main" >"$new/etc/apt/sources.list"
cp /etc/resolv.conf "$new/etc/resolv.conf"
log "installing ${packages[*]}"
# With a /proc for the maintainer scripts (see inroot).
if ! inroot "$new" sh -euc '
	export DEBIAN_FRONTEND=noninteractive LC_ALL=C
	apt-get -qq update
	apt-get -qq install -y --no-install-recommends "$@"
	apt-get -qq clean
' sh "${packages[@]}" >"$dir/install.log" 2>&1; then
	tail -n 20 "$dir/install.log" >&2
	log "installing the packages failed (whole log: $dir/install.log)"
	exit 1
fi
if ! whole "$new"; then
	log "the new root in $new is not whole: a package or program is missing or does not run"
	exit 1
fi
rm -rf "$root"
mv "$new" "$root"
versions "$root" >"$stamp"
log "made $root in $(($(date +%s) - start))s: $(cat "$stamp")"
echo "$root"
