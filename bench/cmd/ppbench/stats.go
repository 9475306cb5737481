package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Series is the measurements of one command in one case.
type Series struct {
	Tool    string          `json:"tool"`
	Op      string          `json:"op"` // "ADD" or "DEL"
	Wall    []time.Duration `json:"wall_ns"`
	MaxRSS  []int64         `json:"maxrss_kib"` // wait4 ru_maxrss of each run
	Failed  int             `json:"failed"`
	LastErr string          `json:"last_error,omitempty"`
	Note    string          `json:"note,omitempty"`
}

func (s *Series) add(sm Sample, err error) {
	if err != nil {
		s.Failed++
		s.LastErr = err.Error()
		return
	}
	s.Wall = append(s.Wall, sm.Wall)
	s.MaxRSS = append(s.MaxRSS, sm.MaxRSS)
}

// Summary is what the report prints of a Series.
type Summary struct {
	N                      int
	Median, P10, P90, P99  time.Duration
	Min, Max               time.Duration
	MaxRSSMedian, MaxRSSPk int64
}

// quantile returns the q-quantile (0..1) of sorted d, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func summarize(s *Series) Summary {
	d := append([]time.Duration(nil), s.Wall...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	r := append([]int64(nil), s.MaxRSS...)
	sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
	sm := Summary{N: len(d)}
	if len(d) == 0 {
		return sm
	}
	sm.Median = median(d)
	sm.P10, sm.P90, sm.P99 = quantile(d, 0.10), quantile(d, 0.90), quantile(d, 0.99)
	sm.Min, sm.Max = d[0], d[len(d)-1]
	sm.MaxRSSMedian = r[len(r)/2]
	sm.MaxRSSPk = r[len(r)-1]
	return sm
}

// median of sorted d: the mean of the two middle values for an even count.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "–"
	case f < 10:
		return fmt.Sprintf("%.2f", f)
	case f < 100:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.0f", f)
	}
}

// ratio formats a/b.
func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

// pairedRatio is the median over runs of a[i]/b[i]: the two commands of
// run i ran one right after the other, so a load spike that slows both
// cancels out. Only the runs both have are used.
func pairedRatio(a, b []time.Duration) (float64, int) {
	n := min(len(a), len(b))
	if n == 0 {
		return 0, 0
	}
	q := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if b[i] > 0 {
			q = append(q, float64(a[i])/float64(b[i]))
		}
	}
	if len(q) == 0 {
		return 0, 0
	}
	sort.Float64s(q)
	m := len(q)
	if m%2 == 1 {
		return q[m/2], m
	}
	return (q[m/2-1] + q[m/2]) / 2, m
}
