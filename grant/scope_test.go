package grant

import "testing"

func TestScopeSet(t *testing.T) {
	all := ScopeRead | ScopeDeploy | ScopeDelete | ScopeAdmin
	if got := all.String(); got != "admin delete deploy read" {
		t.Errorf("String() = %q", got)
	}
	if got := (ScopeRead | ScopeDeploy).String(); got != "deploy read" {
		t.Errorf("String() = %q", got)
	}
	set, unknown := ParseScopeNames([]string{"read", "Deploy", "write", "admin"})
	if set != ScopeRead|ScopeAdmin || len(unknown) != 2 {
		t.Errorf("ParseScopeNames = %v, %v", set, unknown)
	}
	tests := []struct {
		have, need ScopeSet
		ok         bool
	}{
		{ScopeRead, ScopeRead, true},
		{ScopeRead, ScopeDeploy, false},
		{ScopeDeploy, ScopeRead, false}, // no scope implies another
		{ScopeDelete, ScopeDeploy, false},
		{ScopeRead | ScopeDeploy, ScopeRead | ScopeDeploy, true},
		{ScopeRead, ScopeRead | ScopeDeploy, false}, // a list needs all
		{ScopeAdmin, ScopeRead | ScopeDeploy | ScopeDelete, true},
		{0, ScopeRead, false},
	}
	for _, tt := range tests {
		if got := tt.have.Satisfies(tt.need); got != tt.ok {
			t.Errorf("%q.Satisfies(%q) = %v, want %v", tt.have, tt.need, got, tt.ok)
		}
	}
}

func TestKind(t *testing.T) {
	for _, k := range []Kind{KindAPIKey, KindJWT} {
		if back, ok := ParseKind(k.String()); !ok || back != k {
			t.Errorf("ParseKind(%q) = %v, %v", k, back, ok)
		}
	}
	if _, ok := ParseKind("none"); ok {
		t.Error(`ParseKind("none") succeeded: "none" is no credential`)
	}
	jwtOnly := KindSet(0).With(KindJWT)
	if !KindSet(0).Allows(KindAPIKey) || jwtOnly.Allows(KindAPIKey) || !jwtOnly.Allows(KindJWT) {
		t.Error("KindSet: the empty set admits every kind, a set only its own")
	}
}
