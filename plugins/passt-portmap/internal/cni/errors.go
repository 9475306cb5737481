package cni

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// dialect names the core's settings by the configuration's keys (the
// core's names are the keys) and a mapping's fields by their place in
// runtimeConfig.
type dialect struct{}

func (dialect) Setting(s attach.Setting) string { return s.String() }

func (dialect) Mapping(i int, f attach.Field) string {
	entry := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
	if f == attach.FieldNone || f == attach.FieldRange {
		return entry // a CNI mapping has no range: its port is one
	}
	return entry + "." + f.String()
}

func (dialect) Mappings() string           { return "portMappings" }
func (dialect) Locate(place string) string { return "configuration key " + place }

// cniErr converts a verb's error for skel.
func cniErr(err error) error {
	if err == nil {
		return nil
	}
	return toCNI(err)
}

// toCNI is err in the core's words, named by the configuration's keys,
// with the code of its kind from the core's one table; what cannot be
// named is CNI's 999.
func toCNI(err error) *types.Error {
	d := attach.Describe(err, dialect{})
	return types.NewError(uint(d.Kind.Code(int(types.ErrInternal))), d.Msg, d.Details)
}
