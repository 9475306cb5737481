#!/usr/bin/env bash
# demo.sh: passt-portmap end to end, as root, with nothing started by hand.
#
#   1. gets the real pasta (scripts/fetch-pasta.sh), builds the plugin and
#      installs cnitool (the CNI project's own command-line runtime);
#   2. makes a network namespace (the "container") with a web server in it;
#   3. `cnitool add` with a port mapping: the plugin, alone in the
#      conflist, starts a pasta for the namespace (managed mode) and adds
#      the mapping through its control socket;
#   4. fetches the page through 127.0.0.1:HOSTPORT on the host and prints it,
#      shows the forwarder's table, runs `cnitool check`;
#   5. `cnitool del`, shows the port no longer answers, cleans up (also on
#      failure or Ctrl-C).
#
# It changes nothing outside a temporary directory, the namespace it makes
# and libcni's result cache under /var/lib/cni (cleared by the DEL).
#
# Environment: DEMO_HOST_PORT (default: a free port), PASST_CACHE (see
# fetch-pasta.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: run as root (it makes a network namespace)" >&2
	exit 1
fi
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/passt-portmap-demo.XXXXXX)
ns=ppdemo-$$
netns=/run/netns/$ns
added=0
server=
cleanup() {
	set +e
	if [ "$added" = 1 ]; then
		"$work/bin/cnitool" del demo "$netns" >/dev/null 2>&1
	fi
	[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "dependencies (scripts/deps.sh demo)"
scripts/deps.sh demo
export PATH=/usr/local/go/bin:$PATH

say "the real pasta"
bindir=$(scripts/fetch-pasta.sh | tail -n1)
"$bindir/pasta" --version 2>/dev/null | head -n1

say "building the plugin, installing cnitool v1.3.1"
mkdir -p "$work/bin" "$work/net.d" "$work/data"
go build -o "$work/bin/passt-portmap" ./plugins/passt-portmap
go build -o "$work/bin/demoweb" ./integration/cmd/demoweb
GOBIN=$work/bin go install github.com/containernetworking/cni/cnitool@v1.3.1
"$work/bin/passt-portmap" --version

say "a \"container\": network namespace $ns with a web server on port 8080"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" "$work/bin/demoweb" serve :8080 \
	"Hello from the container's web server, reached through passt-portmap!" &
server=$!

port=${DEMO_HOST_PORT:-$("$work/bin/demoweb" freeport)}
cat >"$work/net.d/demo.conflist" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    {
      "type": "passt-portmap",
      "pasta": "$bindir/pasta",
      "dataDir": "$work/data",
      "capabilities": { "portMappings": true }
    }
  ]
}
EOF
say "the network configuration ($work/net.d/demo.conflist)"
cat "$work/net.d/demo.conflist"

export NETCONFPATH=$work/net.d CNI_PATH=$work/bin
export CAP_ARGS="{\"portMappings\": [{\"hostPort\": $port, \"containerPort\": 8080, \"protocol\": \"tcp\"}]}"
say "cnitool add demo $netns   (CAP_ARGS: host port $port -> container port 8080)"
added=1
"$work/bin/cnitool" add demo "$netns"

say "the forwarder's table (passt-portmap show)"
sock=$(find "$work/data" -name '*.sock' -print -quit)
"$work/bin/passt-portmap" show "$sock"

say "GET http://127.0.0.1:$port/ from the host"
page=
for _ in $(seq 50); do # the server in the namespace may still be starting
	if page=$("$work/bin/demoweb" get "http://127.0.0.1:$port/" 2>/dev/null); then
		break
	fi
	sleep 0.1
done
if [ -z "$page" ]; then
	echo "demo.sh: no page through 127.0.0.1:$port" >&2
	exit 1
fi
printf '%s\n' "$page"
say "GET http://[::1]:$port/ from the host"
"$work/bin/demoweb" get "http://[::1]:$port/"

say "cnitool check demo $netns"
"$work/bin/cnitool" check demo "$netns" && echo "CHECK: every owned rule is in the table and listening"

say "cnitool del demo $netns"
"$work/bin/cnitool" del demo "$netns"
added=0
if "$work/bin/demoweb" get "http://127.0.0.1:$port/" >/dev/null 2>&1; then
	echo "demo.sh: port $port still answers after DEL" >&2
	exit 1
fi
if pgrep -f -- "$work/data" >/dev/null; then
	echo "demo.sh: a pasta of the demo still runs after DEL" >&2
	exit 1
fi
echo "port $port no longer answers; the managed pasta is stopped"
say "done"
