# shellcheck shell=bash
# sid.sh: shared pieces of the fetch-*.sh scripts, which take a program
# from Debian unstable (sid) without changing the system: a private apt
# configuration under the cache directory, downloads into a directory of
# our own, unpacking with dpkg-deb, and a wrapper that runs the program
# through sid's own loader (sid's programs need a newer glibc than the
# system's).
#
# Source it, then call sid_init CACHE before the other functions.

# sid_init CACHE: set up the private apt configuration under CACHE/apt
# (kept between runs: its package lists are shared by the fetch scripts).
sid_init() {
	sid_cache=$1
	sid_apt=$sid_cache/apt
	mkdir -p "$sid_apt/lists/partial" "$sid_apt/cache/archives/partial"
	cat >"$sid_apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
SRC
	sid_aptopts=(-o "Dir::Etc::SourceList=$sid_apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$sid_apt/lists" -o "Dir::Cache=$sid_apt/cache"
		-o Dir::State::status=/dev/null -o APT::Get::List-Cleanup=0
		-o Debug::NoLocking=1 -o APT::Sandbox::User=root)
}

# sid_update: refresh the private package lists. apt's own locking is off
# (it would lock the system's), so a lock file of ours keeps two fetch
# scripts from writing the lists at once.
sid_update() {
	(
		flock -w 600 9 || { echo "sid: lists locked for 10 minutes" >&2; exit 1; }
		apt-get "${sid_aptopts[@]}" -qq update >&2
	) 9>"$sid_apt/lock"
}

# sid_version PKG: the newest version of PKG in the private lists.
sid_version() {
	apt-cache "${sid_aptopts[@]}" show "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

# sid_download PKG [WANT]: download PKG=WANT into the current directory,
# or the newest PKG when WANT is empty or gone from unstable. Logs which.
sid_download() {
	local pkg=$1 want=${2:-}
	if [ -n "$want" ] && apt-get "${sid_aptopts[@]}" -qq download "$pkg=$want" >&2 2>/dev/null; then
		echo "sid: got $pkg $want" >&2
		return 0
	fi
	[ -z "$want" ] || echo "sid: $pkg $want is gone from unstable; taking the newest ($(sid_version "$pkg"))" >&2
	apt-get "${sid_aptopts[@]}" -qq download "$pkg" >&2
}

# sid_unpack ROOT DEB...: unpack the packages into ROOT, replacing what
# was there only once every package unpacked.
sid_unpack() {
	local root=$1 deb
	shift
	rm -rf "$root.new"
	mkdir -p "$root.new"
	for deb in "$@"; do dpkg-deb -x "$deb" "$root.new"; done
	rm -rf "$root"
	mv "$root.new" "$root"
}

# sid_wrapper OUT LIBPATH PROGRAM NOTE: write an executable OUT that runs
# PROGRAM through the loader in LIBPATH's first directory with LIBPATH as
# its library path. The loader's --library-path is not inherited by the
# program's children, which run with the system's libraries as usual.
sid_wrapper() {
	local out=$1 libpath=$2 prog=$3 note=$4
	local loader=${libpath%%:*}/ld-linux-x86-64.so.2
	[ -x "$loader" ] || { echo "sid: no loader at $loader" >&2; return 1; }
	[ -x "$prog" ] || { echo "sid: no program at $prog" >&2; return 1; }
	mkdir -p "$(dirname "$out")"
	cat >"$out.new" <<WRAP
#!/bin/sh
# $note
exec "$loader" --library-path "$libpath" "$prog" "\$@"
WRAP
	chmod +x "$out.new"
	mv "$out.new" "$out"
}
