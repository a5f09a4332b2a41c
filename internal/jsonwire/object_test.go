package jsonwire

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestReadObject(t *testing.T) {
	allowed := []string{"a", "b"}
	tests := []struct {
		in      string
		problem Problem // meaningful when ok is false and fnErr is false
		ok      bool
		members int
	}{
		{`{}`, 0, true, 0},
		{` {"a":1,"b":[{"x":2}]} `, 0, true, 2},
		{`{"\u0061":1}`, 0, true, 1}, // exact after unescaping, as encoding/json reads it
		{`[]`, NotObject, false, 0},
		{``, NotObject, false, 0},
		{`{"A":1}`, UnknownName, false, 0}, // encoding/json would take it for "a"
		{`{"a":1,"c":2}`, UnknownName, false, 1},
		{`{"a":1,"a":2}`, RepeatedName, false, 1}, // encoding/json would keep the second
		{`{"a":}`, Syntax, false, 0},
		{`{"a":1`, Syntax, false, 1},
		{`{"a":1} x`, Trailing, false, 1},
		{`{"a":1}{}`, Trailing, false, 1},
	}
	for _, tt := range tests {
		n := 0
		err := ReadObject([]byte(tt.in), allowed, func(name string, value []byte) error {
			if !json.Valid(value) {
				t.Errorf("%s: member %q: value %q is not JSON", tt.in, name, value)
			}
			n++
			return nil
		})
		var je *Error
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: %v", tt.in, err)
		case !tt.ok && (!errors.As(err, &je) || je.Problem != tt.problem):
			t.Errorf("%s: %v, want problem %d", tt.in, err, tt.problem)
		case n != tt.members:
			t.Errorf("%s: fn saw %d members, want %d", tt.in, n, tt.members)
		}
	}
	stop := errors.New("stop")
	if err := ReadObject([]byte(`{"a":1,"b":2}`), allowed, func(string, []byte) error { return stop }); err != stop {
		t.Errorf("fn's error: got %v", err)
	}
}
