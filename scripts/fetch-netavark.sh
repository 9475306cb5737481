#!/usr/bin/env bash
# fetch-netavark.sh: make the real netavark (Podman 5/6's network backend)
# available without changing the system, for the netavark plugin's
# integration tests.
#
# Debian 12 has no netavark that runs external plugins, and unstable's
# needs a newer glibc. So, like fetch-pasta.sh (and with its pieces,
# lib/sid.sh), it downloads the netavark and libc6 packages of Debian
# unstable with a private apt configuration, unpacks them into a cache
# directory and writes a wrapper that runs netavark through unstable's own
# loader, with the system's libraries (libgcc_s) after unstable's libc.
#
# Prints, as its last line, the directory that holds the `netavark`
# wrapper:  NETAVARK_BIN_DIR=$(scripts/fetch-netavark.sh | tail -n1)
#
# Environment:
#   PASST_CACHE       cache directory, shared with fetch-pasta.sh (default:
#                     $XDG_CACHE_HOME/passt-portmap or ~/.cache/passt-portmap);
#                     netavark goes under its netavark/ subdirectory
#   NETAVARK_VERSION  Debian version to ask for first (default 1.17.2-3,
#                     netavark 1.17.2; the newest otherwise)
set -euo pipefail

want=${NETAVARK_VERSION:-1.17.2-3}
cache=${PASST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passt-portmap}
dir=$cache/netavark
bindir=$dir/bin
root=$dir/root
stamp=$dir/installed-version
log() { echo "fetch-netavark: $*" >&2; }

if [ -x "$bindir/netavark" ] && [ -f "$stamp" ] && "$bindir/netavark" --version >/dev/null 2>&1; then
	log "cached: netavark $(cat "$stamp") in $root ($("$bindir/netavark" --version 2>&1))"
	echo "$bindir"
	exit 0
fi

# shellcheck source=lib/sid.sh
. "$(dirname "$0")/lib/sid.sh"
sid_init "$cache"
log "updating a private package list for Debian unstable"
sid_update

mkdir -p "$dir/debs"
cd "$dir/debs"
rm -f ./*.deb
sid_download netavark "$want"
sid_download libc6

sid_unpack "$root" ./*.deb
version=$(dpkg-deb -f ./netavark_*.deb Version)
libcver=$(dpkg-deb -f ./libc6_*.deb Version)

sid_wrapper "$bindir/netavark" "$root/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu" \
	"$root/usr/lib/podman/netavark" \
	"Runs Debian unstable's netavark $version through unstable's loader and libc."
echo "$version" >"$stamp"
if [ "$version" = "$want" ]; then
	log "installed netavark $version (libc6 $libcver) in $root"
else
	log "installed netavark $version, not the $want asked for (libc6 $libcver) in $root"
fi
log "$("$bindir/netavark" --version 2>&1)"
echo "$bindir"
