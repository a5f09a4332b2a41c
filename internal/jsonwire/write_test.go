package jsonwire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzWrite holds String, AppendString and ErrorBody to encoding/json: the
// same string decoded, the same bytes written (without HTML escaping).
func FuzzWrite(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\n\x00\x1f", "<a&b>", "\u2028\u2029", "\xff\xfe", "é€😀"} {
		f.Add(s, "invalid_token")
	}
	f.Fuzz(func(t *testing.T, s, code string) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		got := AppendString(nil, s)
		if !bytes.Equal(append(got, '\n'), want.Bytes()) {
			t.Fatalf("AppendString(%q) = %s, encoding/json %s", s, got, want.Bytes())
		}
		back, ok := String(got)
		var ref string
		if json.Unmarshal(got, &ref) != nil || !ok || back != ref {
			t.Fatalf("String(%s) = %q, %v; encoding/json %q", got, back, ok, ref)
		}
		want.Reset()
		if err := enc.Encode(struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}{code, s}); err != nil {
			t.Fatal(err)
		}
		if body := ErrorBody(code, s); !bytes.Equal(append(body, '\n'), want.Bytes()) {
			t.Fatalf("ErrorBody = %s, encoding/json %s", body, want.Bytes())
		}
	})
}

func TestStringRefusesOtherValues(t *testing.T) {
	for _, raw := range []string{``, `"`, `null`, `1`, `["a"]`, `{}`} {
		if s, ok := String([]byte(raw)); ok {
			t.Errorf("String(%s) = %q, true", raw, s)
		}
	}
}
