package jsonwire

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzMembers checks the member scanner against encoding/json on valid
// JSON objects without repeated names.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":"x\"}","b":[1,{"c":"]"}],"d":null}`, ` { "\u0061lg" : "HS256" , "n" : -1.5e3 } `, `[1]`, `{"a":{"b":{}}}`, `{"":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var want map[string]json.RawMessage
		isObject := json.Unmarshal(b, &want) == nil && want != nil
		got := map[string]string{}
		n := 0
		ok := Members(b, func(name string, val []byte) bool {
			got[strings.Clone(name)] = string(val)
			n++
			return true
		})
		if ok != isObject {
			t.Fatalf("Members ok=%v, encoding/json object=%v", ok, isObject)
		}
		if !ok || n != len(want) { // repeated names: encoding/json keeps the last
			return
		}
		for name, raw := range want {
			if got[name] != string(raw) {
				t.Fatalf("member %q: %q, encoding/json %q", name, got[name], raw)
			}
		}
	})
}
