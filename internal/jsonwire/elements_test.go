package jsonwire

import (
	"encoding/json"
	"testing"
)

// FuzzElements checks the array scanner against encoding/json.
func FuzzElements(f *testing.F) {
	for _, s := range []string{`[]`, `[1]`, ` [ "a]" , {"b":[1,2]} , null ] `, `{}`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var want []json.RawMessage
		isArray := json.Unmarshal(b, &want) == nil && want != nil
		var got []string
		ok := Elements(b, func(v []byte) bool { got = append(got, string(v)); return true })
		if ok != isArray {
			t.Fatalf("Elements ok=%v, encoding/json array=%v", ok, isArray)
		}
		if !ok {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%d elements, encoding/json %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != string(want[i]) {
				t.Fatalf("element %d: %q, encoding/json %q", i, got[i], want[i])
			}
		}
	})
}
