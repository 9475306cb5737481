package cni

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestVersionReply(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		answered bool
		want     string
	}{
		{"echoes 0.3.0", `{"cniVersion":"0.3.0"}`, true, "0.3.0"},
		{"echoes 1.0.0", `{"cniVersion":"1.0.0"}`, true, "1.0.0"},
		{"echoes a version it does not speak", `{"cniVersion":"0.2.0"}`, true, "0.2.0"},
		{"empty input", ``, false, ""},
		{"no cniVersion", `{}`, false, ""},
		{"not JSON", `{`, false, ""},
		{"not a version", `{"cniVersion":"one"}`, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			answered, err := versionReply(strings.NewReader(tt.in), &out, SupportedVersions)
			if err != nil {
				t.Fatal(err)
			}
			if answered != tt.answered {
				t.Fatalf("answered = %v, want %v (output %q)", answered, tt.answered, out.String())
			}
			if !answered {
				if out.Len() != 0 {
					t.Errorf("wrote %q without answering", out.String())
				}
				return
			}
			var got struct {
				CNIVersion        string   `json:"cniVersion"`
				SupportedVersions []string `json:"supportedVersions"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("reply %q: %v", out.String(), err)
			}
			if got.CNIVersion != tt.want {
				t.Errorf("cniVersion = %q, want %q", got.CNIVersion, tt.want)
			}
			if !slices.Equal(got.SupportedVersions, SupportedVersions.SupportedVersions()) {
				t.Errorf("supportedVersions = %v, want %v", got.SupportedVersions, SupportedVersions.SupportedVersions())
			}
		})
	}
}
