#!/usr/bin/env bash
# conformance.sh: the CNI conformance suite (package conformance, command
# cniconform), as root.
#
#   scripts/conformance.sh --plugins DIR --conflist FILE [--markdown] [CNICONFORM FLAGS...]
#       build cniconform and run it on the plugins of FILE found in DIR;
#       one line per check (PASS|FAIL|N/A  section  requirement: observed),
#       CNICONFORM FLAGS: --versions, --hook, --unready-conflist, -v (cniconform -h);
#       exit 1 when a MUST check failed.
#   scripts/conformance.sh --report [--check]
#       run the suite on passt-portmap (attached to a real pasta, and
#       managed; CNI 0.3.0 to 1.1.0) and on Debian's bridge + host-local +
#       portmap from /usr/lib/cni (0.3.0 to 1.1.0, in a private network
#       namespace), and write docs/conformance.md. With --check, write it
#       to a temporary file instead and fail when any check's result
#       differs from the committed docs/conformance.md.
#
# --hook attached|managed DIR is the hook the report gives cniconform (run
# with CONFORM_ACTION=setup|teardown|remove and CNI_CONTAINERID, CNI_NETNS):
# attached starts a pasta with a control socket DIR/$CNI_CONTAINERID.sock
# for each container and restarts it (losing its rules) to remove the
# plugin's resources behind its back; managed kills the container's managed
# pasta (found by the PID files under DIR) to remove them.
set -euo pipefail
orig=$(pwd) # the caller's paths are relative to it
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

hook() {
	local mode=$1 dir=$2 id=${CNI_CONTAINERID:?} netns=${CNI_NETNS:?}
	local sock=$dir/$id.sock pidf=$dir/$id.pid pid f
	stop_pasta() { # stop the pasta of PID file $1, if it is one
		[ -s "$1" ] || return 0
		pid=$(cat "$1")
		if grep -qa pasta "/proc/$pid/cmdline" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			# Gone, or a zombie (its parent is PID 1, which may not reap).
			for _ in $(seq 250); do
				[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || echo Z)" = Z ] && break
				sleep 0.02
			done
		fi
	}
	case $mode/${CONFORM_ACTION:?} in
	attached/setup)
		rm -f "$sock" "$pidf"
		"${PASST_BIN_DIR:?}/pasta" --runas 0 --config-net -c "$sock" -t none -u none \
			-P "$pidf" -l "$dir/$id.log" --netns "$netns" >/dev/null
		for _ in $(seq 250); do [ -S "$sock" ] && return 0; sleep 0.02; done
		echo "conformance.sh: no control socket $sock" >&2
		return 1 ;;
	attached/teardown)
		stop_pasta "$pidf"
		rm -f "$sock" "$pidf" "$dir/$id.log" ;;
	attached/remove) # a restart: the forwarder forgets every rule
		stop_pasta "$pidf"
		CONFORM_ACTION=setup hook attached "$dir" ;;
	managed/setup | managed/teardown) ;;
	managed/remove)
		for f in "$dir"/forwarders/*/pasta.pid; do
			[ -s "$f" ] || continue
			if tr '\0' ' ' <"/proc/$(cat "$f")/cmdline" 2>/dev/null | grep -qF -- "--netns $netns"; then
				stop_pasta "$f"
				return 0
			fi
		done
		echo "conformance.sh: no managed pasta for $netns under $dir" >&2
		return 1 ;;
	*)
		echo "conformance.sh: unknown hook $mode/$CONFORM_ACTION" >&2
		return 2 ;;
	esac
}

if [ "${1:-}" = --hook ]; then
	hook "$2" "$3"
	exit
fi

if [ "$(id -u)" != 0 ]; then
	echo "conformance.sh: run as root: the suite makes network namespaces" >&2
	exit 1
fi

work=$(mktemp -d /tmp/cnf-XXXXXX)
hostns=""
cleanup() {
	[ -z "$hostns" ] || ip netns del "$hostns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/cniconform" ./conformance/cmd/cniconform

if [ "${1:-}" != --report ]; then
	exec_status=0
	(cd "$orig" && "$work/cniconform" "$@") || exec_status=$?
	exit "$exec_status"
fi

check=false
[ "${2:-}" = --check ] && check=true
versions=0.3.0,0.3.1,0.4.0,1.0.0,1.1.0
self=$(pwd)/scripts/conformance.sh

PASST_BIN_DIR=${PASST_BIN_DIR:-$(scripts/fetch-pasta.sh | tail -n1)}
export PASST_BIN_DIR
mkdir -p "$work/plugins" "$work/att" "$work/man" "$work/hl"
go build -o "$work/plugins/passt-portmap" ./plugins/passt-portmap

# conf NAME PLUGINS...: a configuration list of the given plugin objects.
conf() {
	local name=$1
	shift
	local IFS=,
	printf '{"cniVersion":"1.1.0","name":"%s","plugins":[%s]}\n' "$name" "$*"
}
pp='"type":"passt-portmap","capabilities":{"portMappings":true}'
conf cnf-attached "{$pp,\"dataDir\":\"$work/att/data\",\"socket\":\"$work/att/\${CNI_CONTAINERID}.sock\",\"pidFile\":\"$work/att/\${CNI_CONTAINERID}.pid\"}" >"$work/attached.json"
conf cnf-attached "{$pp,\"dataDir\":\"$work/att/data\",\"socket\":\"$work/att/absent.sock\"}" >"$work/attached-unready.json"
conf cnf-managed "{$pp,\"dataDir\":\"$work/man\",\"pasta\":\"$PASST_BIN_DIR/pasta\"}" >"$work/managed.json"
conf cnf-managed "{$pp,\"dataDir\":\"$work/man\",\"pasta\":\"$work/absent/pasta\"}" >"$work/managed-unready.json"
# A private subnet that exists only inside the suite's namespaces and the
# private "host" namespace the chain runs in.
conf cnf-bridge \
	"{\"type\":\"bridge\",\"bridge\":\"cnfbr0\",\"isGateway\":true,\"ipMasq\":false,\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.250.77.0/24\",\"dataDir\":\"$work/hl\"}}" \
	'{"type":"portmap","capabilities":{"portMappings":true},"snat":true}' >"$work/bridge.json"

out=$work/conformance.md
status=0
section() { # TITLE DESCRIPTION CNICONFORM-ARGS... (the part on stdout)
	local title=$1 desc=$2 rc=0
	shift 2
	printf '\n## %s\n\n%s\n\n' "$title" "$desc"
	echo "--- $title" >&2
	"$@" --markdown --versions "$versions" || rc=$?
	echo "--- $title: exit $rc" >&2
	return "$rc"
}

passt_version=$("$PASST_BIN_DIR/pasta" --version | grep -m1 '^pasta ')
plugins_version=$(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || echo "not installed")
cat >"$out" <<MD
# CNI conformance

Generated by \`scripts/conformance.sh --report\` (CI runs it with
\`--check\` and fails when a result of passt-portmap differs from this
file; a change in the reference plugins' results is printed, not failed,
since under load they vary). The suite is
package [\`conformance\`](../conformance) with the command \`cniconform\`:
each requirement of the CNI specification 1.1.0 is a check, run through
libcni in fresh network namespaces, once per CNI version; mapped ports are
probed on the loopback with a server in the container's namespace.
MUST checks fail the command; SHOULD checks are reported. A FAIL of
another plugin is a finding, not a reason to weaken the check.

Against: $passt_version; Debian containernetworking-plugins $plugins_version.
MD

# The three runs are independent (own directories, networks, namespaces):
# run them at once, each into its own part of the report.
section "passt-portmap, attached" \
	"Attached to a real pasta that the hook starts for each container (\`-c DIR/\${CNI_CONTAINERID}.sock\`); the hook removes the plugin's resources by restarting that pasta; not ready: a fixed socket with no forwarder." \
	"$work/cniconform" --plugins "$work/plugins" --conflist "$work/attached.json" \
	--unready-conflist "$work/attached-unready.json" --hook "$self --hook attached $work/att" \
	>"$work/part1" &
p1=$!
section "passt-portmap, managed" \
	"The plugin starts a pasta for each container; the hook removes the plugin's resources by stopping that pasta; not ready: a pasta binary that does not exist." \
	"$work/cniconform" --plugins "$work/plugins" --conflist "$work/managed.json" \
	--unready-conflist "$work/managed-unready.json" --hook "$self --hook managed $work/man" \
	>"$work/part2" &
p2=$!
hostns=cnf-host-$$
ip netns add "$hostns"
ip -n "$hostns" link set lo up
section "bridge + host-local + portmap (Debian, /usr/lib/cni)" \
	"The reference plugins as Debian ships them, chained, run in a private network namespace standing in for the host (bridge \`cnfbr0\`, subnet 10.250.77.0/24); no hook, no unready configuration: those checks are N/A." \
	ip netns exec "$hostns" "$work/cniconform" --plugins /usr/lib/cni --conflist "$work/bridge.json" \
	>"$work/part3" &
p3=$!
rc=0
wait "$p1" || rc=1
wait "$p2" || rc=1
wait "$p3" || true
[ "$rc" = 0 ] || echo "conformance.sh: a MUST check of passt-portmap failed" >&2
cat "$work/part1" "$work/part2" "$work/part3" >>"$out"

# Observations name random ports, namespaces and addresses: compare the
# summary rows and the result column only.
summary() { grep -E '^\| [a-z0-9-]+: |^## |^\| (PASS|FAIL|N/A) \| [0-9.]+ \| [a-z0-9-]+ \|' "$1" | sed -E 's/^(\| (PASS|FAIL|N\/A) \| [0-9.]+ \| [a-z0-9-]+ \|).*/\1/'; }
# part ours|reference: the summary of passt-portmap's sections, or of
# the reference plugins'. Only ours must match: the reference is the
# measure, not the subject, and under load its results vary (its
# parallel check fails now and then while the other two parts run).
part() { awk -v want="$1" '/^## /{ours = /^## passt-portmap/} (want == "ours") == ours'; }
if $check; then
	if ! diff <(summary docs/conformance.md | part ours) <(summary "$out" | part ours) >"$work/diff"; then
		echo "conformance.sh: results differ from docs/conformance.md (< committed, > now):" >&2
		cat "$work/diff" >&2
		status=1
	else
		echo "conformance.sh: passt-portmap's results match docs/conformance.md" >&2
	fi
	if ! diff <(summary docs/conformance.md | part reference) <(summary "$out" | part reference) >"$work/diff"; then
		echo "conformance.sh: note, not a failure: the reference plugins' results differ from docs/conformance.md this run:" >&2
		cat "$work/diff" >&2
	fi
else
	cp "$out" docs/conformance.md
	echo "conformance.sh: wrote docs/conformance.md" >&2
fi
exit "$status"
