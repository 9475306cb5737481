package cni

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/containernetworking/cni/pkg/version"
)

// maxVersionInput bounds what VERSION reads from stdin: its input is one
// small object.
const maxVersionInput = 64 << 10

// versionReply answers CNI VERSION as the specification asks: the reply's
// cniVersion is the one the input names, beside the versions the plugin
// supports. skel discards VERSION's stdin and always answers with its own
// newest version, so the plugin answers this verb itself. It returns
// false, having written nothing, when the input names no usable version:
// skel then answers as it always has.
func versionReply(stdin io.Reader, stdout io.Writer, supported version.PluginInfo) (bool, error) {
	data, err := io.ReadAll(io.LimitReader(stdin, maxVersionInput))
	if err != nil {
		return false, nil
	}
	var in struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(data, &in) != nil || in.CNIVersion == "" {
		return false, nil
	}
	if _, _, _, err := version.ParseVersion(in.CNIVersion); err != nil {
		return false, nil
	}
	out := struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}{in.CNIVersion, supported.SupportedVersions()}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		return true, fmt.Errorf("write the VERSION reply: %w", err)
	}
	return true, nil
}
