package loadgen

import (
	"strings"
	"sync/atomic"
	"testing"
)

// FuzzParseTemplate checks the template parser: no panic; an accepted
// template gives itself back from String, renders without panicking, and
// a template without fields renders its text with the doubled braces
// undone; a rejected one says why, naming the template.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"GET key:{rand:1-100000}", "{{}}", "{counter} {seq} {conn} {bytes:4}", "{", "a}b", "{rand:9-1}", "{bytes:0}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 256 {
			return
		}
		tm, err := ParseTemplate(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "payload template: ") {
				t.Fatalf("ParseTemplate(%q): error %q does not say what it is about", s, err)
			}
			return
		}
		if tm.String() != s {
			t.Fatalf("String() = %q, want %q", tm.String(), s)
		}
		rng := seedFor(1)
		var counter atomic.Uint64
		for _, p := range tm.parts {
			if p.kind == tBytes && p.a > 1<<12 {
				return // large but valid; rendering it adds nothing here
			}
		}
		out := tm.render(nil, 1, 7, &rng, &counter)
		if tm.Fixed() {
			want := strings.NewReplacer("{{", "{", "}}", "}").Replace(s)
			if string(out) != want {
				t.Fatalf("fixed template %q renders %q, want %q", s, out, want)
			}
		}
	})
}
