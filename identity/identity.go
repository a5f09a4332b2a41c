package identity

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"

	"github.com/deplo-sh/deplo-auth/internal/httptoken"
)

// DefaultPrefix is the header prefix of the gateway's default configuration.
const DefaultPrefix = "X-Deplo-"

// The values of the Auth header.
const (
	MethodAPIKey = "api_key"
	MethodJWT    = "jwt"
)

// MaxValueLen bounds every identity header value, in bytes. The gateway
// forwards at most 1024 bytes per value.
const MaxValueLen = 4096

// Identity is the verified identity the gateway forwards.
type Identity struct {
	// Method is the kind of credential: MethodAPIKey or MethodJWT.
	Method string `json:"method"`
	// Subject is the token id (API key) or the sub claim (JWT); never empty.
	Subject string `json:"subject"`
	// Workspace is empty for a credential bound to no workspace.
	Workspace string `json:"workspace,omitempty"`
	// Project is set only for a project-scoped credential.
	Project string `json:"project,omitempty"`
	// Scopes are the granted scopes.
	Scopes ScopeSet `json:"scopes"`
}

// HasScope reports whether the identity satisfies a requirement of the scope
// named name: it holds that scope or admin. An unknown name is never
// satisfied, not even by admin, so that a typo fails closed.
func (id Identity) HasScope(name string) bool {
	bit, ok := ParseScope(name)
	return ok && id.Scopes.Satisfies(bit)
}

// ProjectScoped reports whether the credential is bound to one project.
func (id Identity) ProjectScoped() bool { return id.Project != "" }

// The identity fields in canonical-string order, as indexes into a [5]string
// of raw header values.
const (
	fAuth = iota
	fSubject
	fWorkspace
	fProject
	fScopes
	numFields
)

var fieldSuffixes = [numFields]string{"Auth", "Subject", "Workspace", "Project", "Scopes"}

// headerNames are the canonical header names under one prefix.
type headerNames struct {
	fields    [numFields]string
	signature string
}

var defaultNames = func() headerNames {
	n, err := makeNames(DefaultPrefix)
	if err != nil {
		panic(err)
	}
	return n
}()

// namesFor returns the header names under prefix ("" means DefaultPrefix).
func namesFor(prefix string) (headerNames, error) {
	if prefix == "" || prefix == DefaultPrefix {
		return defaultNames, nil
	}
	return makeNames(prefix)
}

func makeNames(prefix string) (headerNames, error) {
	for i := 0; i < len(prefix); i++ {
		if !httptoken.Char(prefix[i]) {
			return headerNames{}, fmt.Errorf("%w: prefix %q: not a header name", ErrConfig, prefix)
		}
	}
	var n headerNames
	for i, s := range fieldSuffixes {
		n.fields[i] = textproto.CanonicalMIMEHeaderKey(prefix + s)
	}
	n.signature = textproto.CanonicalMIMEHeaderKey(prefix + "Signature")
	return n, nil
}

// Parser reads identity headers under a prefix, trusting them as they are:
// use it only where nothing but the gateway can reach the service. Verifier
// checks the signature first.
type Parser struct {
	// Prefix of the header names; "" means DefaultPrefix.
	Prefix string
}

// Validate checks the prefix (ErrConfig).
func (p Parser) Validate() error {
	_, err := namesFor(p.Prefix)
	return err
}

// FromRequest parses the identity headers under DefaultPrefix without
// checking any signature. See Parser.FromRequest.
func FromRequest(r *http.Request) (Identity, error) { return Parser{}.FromRequest(r) }

// FromRequest parses the identity headers of r without checking any
// signature. It is strict: each header may appear at most once; Auth and
// Subject must be present and non-empty (else ErrNoIdentity); Auth must be
// api_key or jwt, and Scopes in the exact form the gateway sends: known
// names, sorted, single spaces (else ErrMalformed). An absent and an empty
// Workspace, Project or Scopes header mean the same.
func (p Parser) FromRequest(r *http.Request) (Identity, error) {
	names, err := namesFor(p.Prefix)
	if err != nil {
		return Identity{}, err
	}
	vals, _, err := readFields(r.Header, &names)
	if err != nil {
		return Identity{}, err
	}
	return parseFields(&vals)
}

// SetHeaders writes id as the gateway does: Auth, Subject and Scopes always
// (Scopes possibly empty), Workspace and Project only when not empty. Stale
// values of those headers and of the signature header are removed. It
// refuses an identity the parser would refuse.
func (p Parser) SetHeaders(h http.Header, id Identity) error {
	names, err := namesFor(p.Prefix)
	if err != nil {
		return err
	}
	vals, err := id.fields()
	if err != nil {
		return err
	}
	for i, name := range names.fields {
		delete(h, name)
		if vals[i] != "" || i == fScopes {
			h[name] = []string{vals[i]}
		}
	}
	delete(h, names.signature)
	return nil
}

// fields returns the header values of id after checking it is one the
// gateway could send.
func (id Identity) fields() ([numFields]string, error) {
	vals := [numFields]string{id.Method, id.Subject, id.Workspace, id.Project, id.Scopes.String()}
	if id.Scopes&^allScopes != 0 {
		return vals, fmt.Errorf("%w: scopes: bits outside the four scopes", ErrMalformed)
	}
	for i, v := range vals {
		if err := checkValue(v); err != nil {
			return vals, fmt.Errorf("%w: %s: %s", ErrMalformed, fieldSuffixes[i], err.Error())
		}
	}
	v := vals
	if _, err := parseFields(&v); err != nil {
		return vals, err
	}
	return vals, nil
}

// readFields returns the raw values of the identity headers ("" for an
// absent header) and how many were present. Each header may have one value
// at most, a value that can cross the wire unchanged (checkValue).
func readFields(h http.Header, names *headerNames) (vals [numFields]string, present int, err error) {
	for i, name := range names.fields {
		switch vs := h[name]; len(vs) {
		case 0:
		case 1:
			if e := checkValue(vs[0]); e != nil {
				return vals, present, fmt.Errorf("%w: %s: %s", ErrMalformed, name, e.Error())
			}
			vals[i] = vs[0]
			present++
		default:
			return vals, present, fmt.Errorf("%w: %s: more than one value", ErrMalformed, name)
		}
	}
	return vals, present, nil
}

// parseFields interprets raw header values.
func parseFields(vals *[numFields]string) (Identity, error) {
	if vals[fAuth] == "" || vals[fSubject] == "" {
		return Identity{}, ErrNoIdentity
	}
	switch vals[fAuth] {
	case MethodAPIKey, MethodJWT:
	default:
		return Identity{}, fmt.Errorf("%w: Auth: not api_key or jwt", ErrMalformed)
	}
	scopes, err := ParseScopes(vals[fScopes])
	if err != nil {
		return Identity{}, err
	}
	return Identity{
		Method:    vals[fAuth],
		Subject:   vals[fSubject],
		Workspace: vals[fWorkspace],
		Project:   vals[fProject],
		Scopes:    scopes,
	}, nil
}

// valueError explains why checkValue refused a value; it never quotes it.
type valueError string

func (e valueError) Error() string { return string(e) }

// checkValue accepts a header value that arrives at the upstream exactly as
// sent: at most MaxValueLen bytes, no control character (so never "\n", the
// separator of the canonical string) and no leading or trailing space (HTTP
// servers strip those). Bytes 0x80-0xff pass: they travel as they are.
func checkValue(v string) error {
	if len(v) > MaxValueLen {
		return valueError("value too long")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return valueError("control character in value")
		}
	}
	if len(v) > 0 && (v[0] == ' ' || v[len(v)-1] == ' ') {
		return valueError("leading or trailing space in value")
	}
	return nil
}

type ctxKey struct{}

// NewContext returns ctx carrying id, as Middleware stores it.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity Middleware verified for this request.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
