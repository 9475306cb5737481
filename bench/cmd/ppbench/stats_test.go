package main

import (
	"testing"
	"time"
)

func TestQuantileAndMedian(t *testing.T) {
	ds := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x)
		}
		return out
	}
	tests := []struct {
		name          string
		in            []time.Duration
		med, p10, p90 time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", ds(5), 5, 5, 5},
		{"even", ds(1, 2, 3, 4), 2, 1, 4},
		{"ten", ds(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5, 1, 9},
		{"odd", ds(1, 2, 3, 4, 5), 3, 1, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.in); got != tc.med {
				t.Errorf("median = %d, want %d", got, tc.med)
			}
			if got := quantile(tc.in, 0.10); got != tc.p10 {
				t.Errorf("p10 = %d, want %d", got, tc.p10)
			}
			if got := quantile(tc.in, 0.90); got != tc.p90 {
				t.Errorf("p90 = %d, want %d", got, tc.p90)
			}
		})
	}
}

func TestPestoSpec(t *testing.T) {
	tests := []struct {
		name string
		in   []portMapping
		want string
	}{
		{"one", maps(20000, 1, 1), "127.0.0.1/20000"},
		{"apart", maps(20000, 3, 2), "127.0.0.1/20000,20002,20004"},
		{"range", maps(40000, 1000, 1), "127.0.0.1/40000-40999"},
		{"target", []portMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"}}, "127.0.0.1/8080:80"},
		{"target range", []portMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
			{HostPort: 8081, ContainerPort: 81, Protocol: "tcp", HostIP: "127.0.0.1"},
		}, "127.0.0.1/8080-8081:80-81"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pestoSpec(tc.in); got != tc.want {
				t.Errorf("pestoSpec = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPairedRatio(t *testing.T) {
	d := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x)
		}
		return out
	}
	tests := []struct {
		name string
		a, b []time.Duration
		want float64
		n    int
	}{
		{"empty", nil, d(1), 0, 0},
		{"same", d(2, 4, 8), d(2, 4, 8), 1, 3},
		{"spike cancels", d(10, 100, 12), d(5, 50, 6), 2, 3},
		{"shorter b", d(3, 6, 9, 12), d(1, 2), 3, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, n := pairedRatio(tc.a, tc.b)
			if got != tc.want || n != tc.n {
				t.Errorf("pairedRatio = %v over %d, want %v over %d", got, n, tc.want, tc.n)
			}
		})
	}
}
