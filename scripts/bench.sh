#!/usr/bin/env bash
# bench.sh: the benchmark suite, in one command (as root).
#
# What it does:
#   1. installs what it needs with apt-get (iptables, nftables, gnuplot-nox,
#      strace, time) when missing;
#   2. gets the real pasta and pesto (scripts/fetch-pasta.sh);
#   3. installs the reference plugins portmap, bridge and host-local of
#      containernetworking/plugins (go install, pinned) into a private
#      directory, and builds passt-portmap (CGO_ENABLED=0, as the CNI
#      plugins are built) and the bench driver (bench/cmd/ppbench) there;
#   4. makes a network namespace of its own and runs the driver in it: the
#      driver starts pasta with a control socket, a veth pair for portmap
#      (198.18.0.0/24, the benchmarking range, inside namespaces it made),
#      and times every command as a runtime runs it (see bench/README.md);
#   5. runs the Go benchmarks of pkg/... (go test -bench), after the
#      driver so that they do not disturb its timings;
#   6. draws docs/bench-add.png with gnuplot and writes BENCHMARKS.md.
#
# Nothing touches the machine's own netfilter rules or network: portmap runs
# only inside the bench's namespace. Everything made is removed on exit.
#
# Usage: scripts/bench.sh [ppbench flags...]
#   e.g. scripts/bench.sh -runs 50 -only one,conc   (a quick partial run)
#        scripts/bench.sh --report   (only rewrite BENCHMARKS.md from the
#                                     last run's results, e.g. after editing
#                                     bench/NOTES.md)
# Environment:
#   BENCH_TOOLS   private directory for binaries (default ~/.cache/passt-portmap/bench)
#   BENCH_OUT     raw results (default /tmp/passt-portmap-bench)
#   BENCH_GO=0    skip the Go benchmarks of pkg/...
#   BENCH_WRITE=0 do not write BENCHMARKS.md and docs/bench-add.png (results stay in BENCH_OUT)
#   PORTMAP_VERSION  plugins version to compare with (default v1.9.1)
#   BENCH_COMMIT  what to call the measured passt-portmap in BENCHMARKS.md
#                 (default: git describe of the work tree)
#   BENCH_PREFIX  name prefix of the bench's network namespaces (default
#                 pbench-; give another to run beside a bench already running)
#   BENCH_PLUGIN  measure this passt-portmap binary instead of building the
#                 work tree's (e.g. an older commit's, for before/after
#                 figures; say which in BENCH_COMMIT)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${BENCH_TOOLS:-$HOME/.cache/passt-portmap/bench}
out=${BENCH_OUT:-/tmp/passt-portmap-bench}
pmver=${PORTMAP_VERSION:-v1.9.1}
prefix=${BENCH_PREFIX:-pbench-}
hostns=${prefix}host
log() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root: it makes network namespaces and starts pasta"; exit 1; }
started=$(date +%s)

gobench=$out/gobench.txt
report_only=0
if [ "${1:-}" = --report ]; then report_only=1; shift; fi

if [ $report_only = 0 ]; then
	need=()
	command -v iptables >/dev/null || need+=(iptables)
	command -v nft >/dev/null || need+=(nftables)
	command -v gnuplot >/dev/null || need+=(gnuplot-nox)
	command -v strace >/dev/null || need+=(strace)
	[ -x /usr/bin/time ] || need+=(time)
	if [ ${#need[@]} -gt 0 ]; then
		log "installing ${need[*]}"
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
	fi

	pasta_dir=$("$repo/scripts/fetch-pasta.sh" | tail -n1)
	mkdir -p "$tools" "$out"

	for p in meta/portmap main/bridge ipam/host-local; do
		b=$tools/$(basename "$p")
		if [ ! -x "$b" ] || ! go version -m "$b" 2>/dev/null | grep -q "plugins[[:space:]]*$pmver"; then
			log "go install $(basename "$p")@$pmver into $tools"
			(cd /tmp && CGO_ENABLED=0 GOBIN=$tools GOFLAGS=-buildvcs=false go install "github.com/containernetworking/plugins/plugins/$p@$pmver")
		fi
	done
	(cd "$repo" && go build -o "$tools/ppbench" ./bench/cmd/ppbench)
	plugin=$tools/passt-portmap
	build_plugin() {
		if [ -n "${BENCH_PLUGIN:-}" ]; then
			cp "$BENCH_PLUGIN" "$plugin"
		else
			(cd "$repo" && CGO_ENABLED=0 go build -o "$plugin" ./plugins/passt-portmap)
		fi
	}
	if build_plugin; then
		plugin_flag=(-plugin "$plugin")
		echo "${BENCH_COMMIT:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}" >"$out/commit"
	else
		log "passt-portmap does not build: measuring only the peers"
		plugin_flag=()
		plugin=
	fi

	cleanup() {
		# The driver removes what it made; this is for an interrupted run.
		for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
			ip netns del "$ns" 2>/dev/null || true
		done
	}
	trap cleanup EXIT
	cleanup
	ip netns add "$hostns"
	ip -n "$hostns" link set lo up

	log "running the driver in netns $hostns (results in $out)"
	rm -f "$out"/strace-*.txt
	ip netns exec "$hostns" "$tools/ppbench" -pasta-dir "$pasta_dir" "${plugin_flag[@]}" \
		-portmap "$tools/portmap" -cni-bin "$tools" -work "$out/work" -out "$out" -prefix "$prefix" "$@"

	(cd "$out" && gnuplot add.gp) || log "gnuplot failed: no chart"

	# After the driver: the Go benchmarks' build and the memory they
	# allocate (and the reclaim after it) slowed the first pairs of
	# processes that ran after them (verified ADD against pesto 1.66x
	# and 1.78x in two full runs, 1.11x and 1.14x in runs without them).
	if [ "${BENCH_GO:-1}" != 0 ]; then
		log "go test -bench ./pkg/..."
		(cd "$repo" && go test -run '^$' -bench . -benchmem -benchtime 200ms ./pkg/... 2>&1 | grep -v '^?' >"$gobench") || log "go test -bench failed (see $gobench)"
	else
		: >"$gobench"
	fi

elapsed=$(($(date +%s) - started))
echo "$elapsed" >"$out/elapsed"
printf '%s\n' "$*" >"$out/args"
printf '%s\n' "$pasta_dir" >"$out/pasta_dir"
printf '%s\n' "$plugin" >"$out/plugin"
else
	(cd "$repo" && go build -o "$tools/ppbench" ./bench/cmd/ppbench)
	"$tools/ppbench" -from "$out/results.json" -out "$out"
	(cd "$out" && gnuplot add.gp) || log "gnuplot failed: no chart"

	# After the driver: the Go benchmarks' build and the memory they
	# allocate (and the reclaim after it) slowed the first pairs of
	# processes that ran after them (verified ADD against pesto 1.66x
	# and 1.78x in two full runs, 1.11x and 1.14x in runs without them).
	if [ "${BENCH_GO:-1}" != 0 ]; then
		log "go test -bench ./pkg/..."
		(cd "$repo" && go test -run '^$' -bench . -benchmem -benchtime 200ms ./pkg/... 2>&1 | grep -v '^?' >"$gobench") || log "go test -bench failed (see $gobench)"
	else
		: >"$gobench"
	fi
fi
elapsed=$(cat "$out/elapsed")
args=$(cat "$out/args")
pasta_dir=$(cat "$out/pasta_dir")
plugin=$(cat "$out/plugin")
[ "${BENCH_WRITE:-1}" != 0 ] || { log "done in ${elapsed}s; results in $out"; exit 0; }
if [ -s "$out/add.png" ]; then
	mkdir -p "$repo/docs" && cp "$out/add.png" "$repo/docs/bench-add.png"
else
	log "no chart drawn: docs/bench-add.png left as it was"
fi

ver() { "$@" 2>&1 | head -n1 | sed 's/|/\\|/g'; }
{
	echo "# Benchmarks"
	echo
	echo "What an ADD and a DEL of port forwarding cost with passt-portmap, against"
	echo "pesto (the forwarder's own C client: the floor) and the portmap plugin of"
	echo "containernetworking/plugins with its iptables and its nftables backend, on"
	echo "one machine in one run. Generated by \`scripts/bench.sh\`; the"
	echo "analysis at the end is written by hand (bench/NOTES.md)."
	echo
	echo "## Machine, versions, command"
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| date | $(date -u -r "$out/results.json" '+%Y-%m-%d %H:%M UTC') |"
	echo "| CPU | $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (shared with other work) |"
	echo "| kernel | $(uname -r) |"
	echo "| OS | $(. /etc/os-release && echo "$PRETTY_NAME") |"
	echo "| passt | $("$pasta_dir/pasta" --version 2>/dev/null | head -n1 | sed 's/^pasta //') (Debian unstable package, run through its own loader) |"
	echo "| Go | $(go version | cut -d' ' -f3-) |"
	echo "| passt-portmap | $(cat "$out/commit" 2>/dev/null || echo "not built") |"
	echo "| portmap | containernetworking/plugins $pmver (\`go install\`) |"
	echo "| iptables | $(ver iptables --version) |"
	echo "| nftables | $(ver nft --version) |"
	echo
	echo "Reproduce (as root; takes about $(( (elapsed + 59) / 60 )) minutes here):"
	echo
	echo '```'
	echo "scripts/bench.sh $args"
	echo '```'
	echo
	echo "Every command runs as a new process, the way a runtime runs it"
	echo "(\`CNI_*\` in the environment, the configuration on stdin; pesto with its"
	echo "arguments), started by the driver \`bench/cmd/ppbench\` inside a network"
	echo "namespace of the bench's own, and timed from just before the fork to the"
	echo "reaping of the process. pesto runs through the loader of the Debian"
	echo "unstable libc it is built for (as scripts/fetch-pasta.sh installs it),"
	echo "without the shell wrapper. See bench/README.md for the details."
	echo
	cat "$out/figures.md"
	if [ -s "$gobench" ]; then
		echo
		echo "### Go benchmarks of pkg/..."
		echo
		echo '```'
		echo "go test -run '^\$' -bench . -benchmem -benchtime 200ms ./pkg/..."
		grep -E '^(Benchmark|ok|FAIL|pkg:)' "$gobench" || true
		echo '```'
	fi
	for f in "$out"/strace-add-c.txt "$out"/strace-del-c.txt; do
		[ -s "$f" ] || continue
		echo
		echo "### \`strace -f -c\` of one $(basename "$f" | sed 's/strace-\(.*\)-c.txt/\1/' | tr a-z A-Z) (verified)"
		echo
		echo '```'
		head -n 40 "$f"
		echo '```'
	done
	if [ -f "$repo/bench/NOTES.md" ]; then
		echo
		cat "$repo/bench/NOTES.md"
	fi
} >"$repo/BENCHMARKS.md"
log "done in ${elapsed}s: BENCHMARKS.md, docs/bench-add.png; raw results in $out"
