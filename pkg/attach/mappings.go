package attach

import (
	"errors"
	"slices"

	"github.com/passt-portmap/passt-portmap/pkg/translate"
	"github.com/passt-portmap/passt-portmap/pkg/wire"
)

// compiler translates an attachment's mappings under its options. The
// mappings, checked first (checkMapping), are expanded to one entry per
// port and protocol for pkg/translate, which compacts them again; errors
// name the caller's mapping, not the expanded entry.
type compiler struct {
	entries []translate.PortMapping
	origin  []int // origin[i]: the Mapping that entries[i] came from
	opts    translate.Options
}

func newCompiler(ms []Mapping, o *Options) (*compiler, error) {
	c := &compiler{opts: translate.Options{Weak: o.Weak, Target: o.TargetAddress, Interface: o.BindInterface}}
	for i, m := range ms {
		protos, err := checkMapping(i, m)
		if err != nil {
			return nil, err
		}
		n := max(m.Range, 1)
		for _, p := range protos {
			for j := range n {
				e := single(m, p)
				e.HostPort += j
				e.ContainerPort += j
				c.entries = append(c.entries, e)
				c.origin = append(c.origin, i)
			}
		}
	}
	return c, nil
}

func single(m Mapping, proto string) translate.PortMapping {
	return translate.PortMapping{HostPort: m.HostPort, ContainerPort: m.ContainerPort, Protocol: proto, HostIP: m.HostIP}
}

// identity reports whether every entry is its own mapping (one port, one
// protocol each, as CNI sends them).
func (c *compiler) identity() bool {
	return len(c.entries) == 0 || c.origin[len(c.origin)-1] == len(c.entries)-1
}

// compile is translate.Compile with errors naming mappings.
func (c *compiler) compile(caps wire.Caps) (translate.Compiled, error) {
	comp, err := translate.Compile(c.entries, c.opts, caps)
	return comp, c.attribute(err)
}

// rules is translate.Rules with errors naming mappings.
func (c *compiler) rules(caps wire.Caps) ([]wire.Rule, error) {
	comp, err := c.compile(caps)
	return comp.Rules, err
}

// mappings returns the indexes of the caller's mappings behind entry
// indexes, ascending.
func (c *compiler) mappings(idx []int) []int {
	if c.identity() {
		return idx
	}
	out := make([]int, 0, len(idx))
	for _, i := range idx {
		out = append(out, c.origin[i])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// attribute rewrites entry indexes in err into mapping indexes.
func (c *compiler) attribute(err error) error {
	if err == nil || c.identity() {
		return err
	}
	var me *translate.MappingError
	if errors.As(err, &me) && me.Index >= 0 && me.Index < len(c.origin) {
		me.Index = c.origin[me.Index]
	}
	var te *translate.TableError
	if errors.As(err, &te) {
		te.Entries = c.mappings(te.Entries)
	}
	return err
}
