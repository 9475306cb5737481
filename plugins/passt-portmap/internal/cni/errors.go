package cni

import (
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/passt-portmap/passt-portmap/pkg/attach"
)

// The plugin's CNI error codes (documented in the README). 7, 11 and 50
// are the CNI specification's own.
const (
	codeBadConfig     uint = types.ErrInvalidNetworkConfig // 7: bad configuration or mappings
	codeUnreachable   uint = types.ErrTryAgainLater        // 11: forwarder unreachable or busy past the timeout
	codeNotAvailable  uint = types.ErrPluginNotAvailable   // 50: STATUS failed
	codeSafeFail      uint = 100                           // rejected, nothing changed
	codeSocketFail    uint = 101                           // ports could not listen, rolled back
	codeRollbackFail  uint = 102                           // rollback failed, state unknown
	codeMismatch      uint = 103                           // protocol mismatch
	codeCheckFailed   uint = 104                           // CHECK: owned rules missing or not listening
	codeUnknownFailed uint = types.ErrInternal             // 999: only for what cannot be named
)

// codes maps the core's outcomes onto the CNI codes.
var codes = map[attach.Kind]uint{
	attach.KindUnknown:      codeUnknownFailed,
	attach.KindBadConfig:    codeBadConfig,
	attach.KindUnreachable:  codeUnreachable,
	attach.KindNotAvailable: codeNotAvailable,
	attach.KindSafeFail:     codeSafeFail,
	attach.KindSocketFail:   codeSocketFail,
	attach.KindRollbackFail: codeRollbackFail,
	attach.KindMismatch:     codeMismatch,
	attach.KindCheckFailed:  codeCheckFailed,
	attach.KindIO:           types.ErrIOFailure,
}

// dialect names the core's settings by the configuration's keys.
type dialect struct{}

func (dialect) Key(s attach.Setting) string { return s.String() } // the core's names are the keys
func (dialect) Noun() string                { return "configuration key" }
func (dialect) Mappings() string            { return "portMappings" }

// cniErr converts a verb's error for skel: the core's words, the CNI code.
func cniErr(err error) error {
	if err == nil {
		return nil
	}
	return toCNI(err)
}

func toCNI(err error) *types.Error {
	if te := (*types.Error)(nil); errors.As(err, &te) {
		return te
	}
	d := attach.Describe(err, dialect{})
	code, ok := codes[d.Kind]
	if !ok {
		code = codeUnknownFailed
	}
	return types.NewError(code, d.Msg, d.Details)
}
