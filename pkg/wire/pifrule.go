package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// PifRule is a rule in a named pif's table: what a client adds, owns,
// removes or checks. Two PifRules are the same when their pif names and
// rule bytes are.
type PifRule struct {
	Pif  string
	Rule Rule
}

// PifRuleKey identifies a PifRule by its pif name and rule bytes.
type PifRuleKey struct {
	Pif  string
	Rule [RuleSize]byte
}

// Key returns the rule's identity for sets and maps.
func (pr PifRule) Key() PifRuleKey { return PifRuleKey{pr.Pif, pr.Rule.Key()} }

// String gives the rule in pesto's notation with its pif, e.g.
// "HOST TCP [*]:8080  =>  80".
func (pr PifRule) String() string { return pr.Pif + " " + strings.TrimSpace(pr.Rule.String()) }

// RulesIn returns rs as PifRules of pif.
func RulesIn(pif string, rs []Rule) []PifRule {
	out := make([]PifRule, 0, len(rs))
	for _, r := range rs {
		out = append(out, PifRule{Pif: pif, Rule: r})
	}
	return out
}

// Union returns a followed by the rules of b not in a, without repeats
// from b. a itself is returned when b adds nothing.
func Union(a, b []PifRule) []PifRule {
	if len(b) == 0 {
		return a
	}
	seen := make(map[PifRuleKey]bool, len(a)+len(b))
	for _, x := range a {
		seen[x.Key()] = true
	}
	out := append([]PifRule(nil), a...)
	for _, x := range b {
		if k := x.Key(); !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	return out
}

// Minus returns the rules of a that are not in b, in a's order.
func Minus(a, b []PifRule) []PifRule {
	in := make(map[PifRuleKey]bool, len(b))
	for _, x := range b {
		in[x.Key()] = true
	}
	var out []PifRule
	for _, x := range a {
		if !in[x.Key()] {
			out = append(out, x)
		}
	}
	return out
}

// ByPif splits rs by pif: the pifs in first-seen order, and each one's
// rules in order.
func ByPif(rs []PifRule) (pifs []string, rules map[string][]Rule) {
	rules = map[string][]Rule{}
	for _, x := range rs {
		if _, ok := rules[x.Pif]; !ok {
			pifs = append(pifs, x.Pif)
		}
		rules[x.Pif] = append(rules[x.Pif], x.Rule)
	}
	return pifs, rules
}

// pifRuleJSON is a PifRule in a file a person may read: the rule's bytes
// in hex are authoritative, its notation is for the reader.
type pifRuleJSON struct {
	Pif  string `json:"pif"`
	Text string `json:"rule"`  // pesto notation, for a person
	Hex  string `json:"bytes"` // the 56-byte encoding, authoritative
}

// MarshalJSON writes the pif, the rule in pesto notation and its encoding.
// '<', '>' and '&' are not escaped, so that "=>" stays readable.
func (pr PifRule) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(pifRuleJSON{Pif: pr.Pif, Text: pr.Rule.String(), Hex: hex.EncodeToString(pr.Rule.Append(nil))})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), err
}

// UnmarshalJSON reads the encoding back; the notation is not interpreted.
func (pr *PifRule) UnmarshalJSON(b []byte) error {
	var j pifRuleJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Pif == "" {
		return fmt.Errorf("owned rule %q: empty pif", j.Text)
	}
	raw, err := hex.DecodeString(j.Hex)
	if err != nil {
		return fmt.Errorf("owned rule %q: bytes: %w", j.Text, err)
	}
	r, err := ParseRule(raw)
	if err != nil {
		return fmt.Errorf("owned rule %q: %w", j.Text, err)
	}
	pr.Pif, pr.Rule = j.Pif, r
	return nil
}

// PortList renders ascending ports compactly, "8080, 9000-9003", and
// "(none named)" for none.
func PortList(ports []uint16) string {
	if len(ports) == 0 {
		return "(none named)"
	}
	var parts []string
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(int(ports[i])))
		} else {
			parts = append(parts, strconv.Itoa(int(ports[i]))+"-"+strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
