#!/usr/bin/env bash
# fetch-pasta.sh: make the real pasta and pesto (with a control socket,
# protocol version 2) available without changing the system.
#
# It uses a system pasta when one new enough is installed (it has pesto
# beside it and `pasta --help` lists --conf-path). Otherwise it downloads
# the passt and libc6 packages of Debian unstable with a private apt
# configuration, unpacks them into a cache directory, and writes two small
# wrappers that run the binaries through unstable's own loader.
#
# Prints, as its last line, the directory that holds `pasta` and `pesto`
# (wrappers or links), so callers can do:  PASTA_BIN=$(scripts/fetch-pasta.sh)
#
# Environment:
#   PASST_CACHE    cache directory (default: $XDG_CACHE_HOME/passt-portmap
#                  or ~/.cache/passt-portmap)
#   PASST_VERSION  Debian version to ask for first
#                  (default 0.0~git20261002.cba3570-1; the newest otherwise)
#   PASST_FORCE_DOWNLOAD=1  ignore a system pasta
set -euo pipefail

want=${PASST_VERSION:-0.0~git20261002.cba3570-1}
cache=${PASST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passt-portmap}
bindir=$cache/bin
log() { echo "fetch-pasta: $*" >&2; }

# has_ctl BIN: does this pasta know --conf-path (the control socket)?
has_ctl() { "$@" --help 2>&1 | grep -q -- '--conf-path'; }

if [ "${PASST_FORCE_DOWNLOAD:-0}" != 1 ] && command -v pasta >/dev/null &&
	command -v pesto >/dev/null && has_ctl pasta; then
	log "using the system's pasta: $(pasta --version 2>&1 | head -n1)"
	mkdir -p "$bindir"
	ln -sf "$(command -v pasta)" "$bindir/pasta"
	ln -sf "$(command -v pesto)" "$bindir/pesto"
	echo "$bindir"
	exit 0
fi

root=$cache/root
stamp=$cache/installed-version
if [ -x "$bindir/pasta" ] && [ -f "$stamp" ] && "$bindir/pasta" --version >/dev/null 2>&1; then
	log "cached: passt $(cat "$stamp") in $root"
	echo "$bindir"
	exit 0
fi

# shellcheck source=lib/sid.sh
. "$(dirname "$0")/lib/sid.sh"
sid_init "$cache"
mkdir -p "$cache/debs"
log "updating a private package list for Debian unstable"
sid_update

cd "$cache/debs"
rm -f ./*.deb
sid_download passt "$want"
sid_download libc6

sid_unpack "$root" ./*.deb
version=$(dpkg-deb -f ./passt_*.deb Version)
libcver=$(dpkg-deb -f ./libc6_*.deb Version)

libdir=$root/usr/lib/x86_64-linux-gnu
for prog in pasta pesto; do
	sid_wrapper "$bindir/$prog" "$libdir" "$root/usr/bin/$prog" \
		"Runs Debian unstable's $prog (passt $version) through its own loader."
done
echo "$version" >"$stamp"
log "installed passt $version (libc6 $libcver) in $root"
log "$("$bindir/pasta" --version 2>&1 | head -n1)"
echo "$bindir"
