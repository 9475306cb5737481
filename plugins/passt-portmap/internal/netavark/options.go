package netavark

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/passt-portmap/passt-portmap/pkg/forwarder"
	"github.com/passt-portmap/passt-portmap/pkg/translate"
)

// DefaultTimeout is the default of the timeout option, as of the CNI
// configuration's key. dataDir's default is the core's
// (attach.DefaultDataDir): an empty DataDir.
const DefaultTimeout = 5 * time.Second

// Options are a network's options ("podman network create -o KEY=VALUE"),
// parsed. The keys are those of the CNI configuration that make sense for
// a network whose forwarder the plugin always starts itself.
type Options struct {
	Pasta     string   // "pasta": the pasta binary; "" is pasta from PATH
	PastaArgs []string // "pastaArgs": extra pasta arguments
	DataDir   string   // "dataDir": records and forwarders' files; "" the core's default
	Timeout   time.Duration
	Weak      bool // "weak": a port that cannot bind is not an error
	Verify    bool // "verify": check that the rules listen (default true)
	// Target is "targetAddress", the container-side address to forward
	// to; the zero Addr is the container's own address.
	Target        netip.Addr
	BindInterface string // "bindInterface": host interface to listen on
	// MapHostLoopback ("mapHostLoopback": one address, or an IPv4 and an
	// IPv6 one separated by a comma) are the addresses through which the
	// container reaches the host's loopback; none by default.
	MapHostLoopback []netip.Addr
	// LoopbackToHost ("loopbackToHost") forwards the container's loopback
	// ports to the host's loopback; off by default.
	LoopbackToHost bool
}

// optionKeys are the known option keys, for the message about an unknown
// one.
var optionKeys = []string{"bindInterface", "dataDir", "loopbackToHost", "mapHostLoopback", "pasta", "pastaArgs", "targetAddress", "timeout", "verify", "weak"}

// ParseOptions validates a network's options. Every value is a string (it
// came from -o KEY=VALUE): booleans are those of strconv.ParseBool,
// timeout a Go duration, pastaArgs a JSON list of strings or words
// separated by spaces. Unlike a CNI configuration, an unknown key is an
// error: it is most likely a misspelt one, and create reports it when the
// network is made, not when a container starts.
func ParseOptions(opts map[string]string) (Options, error) {
	o := Options{Timeout: DefaultTimeout, Verify: true}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad key named is always the same one
	for _, k := range keys {
		v := opts[k]
		var err error
		switch k {
		case "pasta":
			if v != "" && !filepath.IsAbs(v) && strings.Contains(v, "/") {
				err = fmt.Errorf("%q: want an absolute path or a name to look up in PATH", v)
			}
			o.Pasta = v
		case "pastaArgs":
			if o.PastaArgs, err = words(v); err == nil {
				// pasta's allow-list, checked when the network is made.
				if err = forwarder.CheckArgs(o.PastaArgs); err != nil {
					var ae *forwarder.ArgError
					if errors.As(err, &ae) {
						err = fmt.Errorf("word %d: %s", ae.Index, ae.Detail())
					}
				}
			}
		case "dataDir":
			if !filepath.IsAbs(v) {
				err = fmt.Errorf("%q is not an absolute path", v)
			}
			o.DataDir = filepath.Clean(v)
		case "timeout":
			o.Timeout, err = time.ParseDuration(v)
			if err != nil {
				err = fmt.Errorf("%w (want a Go duration such as \"5s\")", err)
			} else if o.Timeout <= 0 {
				err = fmt.Errorf("%q: must be positive", v)
			}
		case "weak":
			o.Weak, err = parseBool(v)
		case "verify":
			o.Verify, err = parseBool(v)
		case "targetAddress":
			o.Target, err = targetAddress(v)
		case "bindInterface":
			if v == "" {
				err = errors.New("empty: leave the option out to listen on every interface")
			} else {
				err = translate.CheckInterface(v)
			}
			o.BindInterface = v
		case "mapHostLoopback":
			o.MapHostLoopback, err = hostLoopback(v)
		case "loopbackToHost":
			o.LoopbackToHost, err = parseBool(v)
		default:
			err = fmt.Errorf("not an option of the passt-portmap driver (known: %s)", strings.Join(optionKeys, ", "))
		}
		if err != nil {
			return Options{}, &FieldError{Field: "network.options." + k, Err: err}
		}
	}
	return o, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q: want true or false", v)
	}
	return b, nil
}

func targetAddress(v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return a, fmt.Errorf("%q: not an IP address", v)
	}
	return a, translate.CheckTarget(a)
}

// hostLoopback reads mapHostLoopback: one address, or one of each family
// separated by a comma, checked as the forwarder checks them.
func hostLoopback(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q: want one IP address, or an IPv4 and an IPv6 address separated by a comma", v)
		}
		out = append(out, a)
	}
	if err := forwarder.CheckMapHostLoopback(out); err != nil {
		return nil, fmt.Errorf("%q: %w", v, err)
	}
	return out, nil
}

// words reads pastaArgs: a JSON list of strings when it starts with '[',
// otherwise the words separated by spaces (no quoting).
func words(v string) ([]string, error) {
	t := strings.TrimSpace(v)
	if !strings.HasPrefix(t, "[") {
		return strings.Fields(t), nil
	}
	var out []string
	if err := json.Unmarshal([]byte(t), &out); err != nil {
		return nil, fmt.Errorf("%q: not a JSON list of strings: %w", v, err)
	}
	return out, nil
}
