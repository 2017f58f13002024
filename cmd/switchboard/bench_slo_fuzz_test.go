package main

import "testing"

// FuzzParseObjective: no panic; an accepted objective's canonical text
// parses back to the same objective.
func FuzzParseObjective(f *testing.F) {
	for _, s := range []string{"p99<=1ms", "P99.9 < 250us", "max<=2s", "p42<=1ms", "<=", "p50<=-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseObjective(s)
		if err != nil {
			return
		}
		o2, err := parseObjective(o.text)
		if err != nil || o2.quantile != o.quantile || o2.limit != o.limit || o2.text != o.text {
			t.Fatalf("%q -> %q does not parse back: %+v, %v", s, o.text, o2, err)
		}
	})
}

// FuzzParseRates: no panic; accepted rates are non-negative, and a range
// is ascending, positive and at most maxSteps long.
func FuzzParseRates(f *testing.F) {
	for _, s := range []string{"0", "1000", "1000:5000:1000", "5:1:1", "1:100:0", "1e300:1e308:1e300", "NaN", "1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rates, err := parseRates(s)
		if err != nil {
			return
		}
		if len(rates) == 0 || len(rates) > maxSteps {
			t.Fatalf("%q: %d rates", s, len(rates))
		}
		for i, r := range rates {
			if r < 0 || (len(rates) > 1 && (r <= 0 || (i > 0 && r <= rates[i-1]))) {
				t.Fatalf("%q: rates %v", s, rates)
			}
		}
	})
}
