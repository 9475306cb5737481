package wire

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestPortList: one rendering of ports for every message (the client's
// and the plugin's used to differ for none).
func TestPortList(t *testing.T) {
	for _, tc := range []struct {
		in   []uint16
		want string
	}{
		{nil, "(none named)"}, {[]uint16{1}, "1"}, {[]uint16{1, 2, 3, 5}, "1-3, 5"}, {[]uint16{1, 2, 3, 5, 7, 8}, "1-3, 5, 7-8"},
		{[]uint16{65535}, "65535"}, {[]uint16{65534, 65535}, "65534-65535"}, {[]uint16{7, 9, 10}, "7, 9-10"},
	} {
		if got := PortList(tc.in); got != tc.want {
			t.Errorf("PortList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPifRuleSets(t *testing.T) {
	r := func(p uint16) Rule { return NewRule(ProtoTCP, netip.Addr{}, p, p, 80, FlagDualStack) }
	a, b, c := PifRule{PifHost, r(1)}, PifRule{PifHost, r(2)}, PifRule{"SPLICE", r(1)}
	for _, tc := range []struct {
		name      string
		got, want []PifRule
	}{
		{"union keeps a, adds b's new ones once", Union([]PifRule{a, b}, []PifRule{c, a, c}), []PifRule{a, b, c}},
		{"union with nothing", Union([]PifRule{a}, nil), []PifRule{a}},
		{"union into nothing", Union(nil, []PifRule{b, b}), []PifRule{b}},
		{"minus", Minus([]PifRule{a, b, c}, []PifRule{b}), []PifRule{a, c}},
		{"minus tells pifs apart", Minus([]PifRule{a, c}, []PifRule{a}), []PifRule{c}},
		{"minus of all", Minus([]PifRule{a}, []PifRule{a, b}), nil},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	pifs, by := ByPif([]PifRule{a, c, b})
	if !slices.Equal(pifs, []string{PifHost, "SPLICE"}) || len(by[PifHost]) != 2 || len(by["SPLICE"]) != 1 {
		t.Errorf("ByPif: %v %v", pifs, by)
	}
}

// A PifRule survives JSON byte for byte, and its notation keeps "=>".
func TestPifRuleJSON(t *testing.T) {
	pr := PifRule{PifHost, NewRule(ProtoUDP, netip.MustParseAddr("127.0.0.1"), 53, 54, 5353, FlagWeak)}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // as the store writes records
	enc.SetEscapeHTML(false)
	if err := enc.Encode([]PifRule{pr}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "=>") {
		t.Errorf("notation escaped: %s", buf.String())
	}
	b, err := json.Marshal(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "=") {
		t.Errorf("notation escaped: %s", b)
	}
	var back PifRule
	if err := json.Unmarshal(b, &back); err != nil || back.Key() != pr.Key() {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []string{`{"pif":"","bytes":""}`, `{"pif":"HOST","bytes":"zz"}`, `{"pif":"HOST","bytes":"00"}`, `7`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
