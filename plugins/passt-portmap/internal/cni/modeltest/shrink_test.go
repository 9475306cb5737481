package modeltest

import (
	"testing"
)

// ddmin finds a 1-minimal failing subsequence.
func TestDDMin(t *testing.T) {
	for _, tc := range []struct {
		n    int
		need []int // the failure needs these attachments' ops, in order
	}{
		{20, []int{3, 7}},
		{1, []int{0}},
		{33, []int{0, 16, 32}},
		{8, []int{5}},
	} {
		ops := make([]op, tc.n)
		for i := range ops {
			ops[i] = op{kind: opCheck, att: i}
		}
		fails := func(seq []op) bool {
			j := 0
			for _, o := range seq {
				if j < len(tc.need) && o.att == tc.need[j] {
					j++
				}
			}
			return j == len(tc.need)
		}
		got := ddmin(ops, fails)
		if len(got) != len(tc.need) {
			t.Fatalf("ddmin of %d ops needing %v: %v", tc.n, tc.need, got)
		}
		for i, o := range got {
			if o.att != tc.need[i] {
				t.Fatalf("ddmin of %d ops needing %v: %v", tc.n, tc.need, got)
			}
		}
	}
}
