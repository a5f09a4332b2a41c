package identity

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Defaults of Verifier.
const (
	DefaultMaxAge  = 30 * time.Second
	DefaultMaxSkew = 5 * time.Second
)

// Verifier checks the signature of the forwarded identity and parses it. A
// Verifier is safe for concurrent use. Its fields are read once, on first
// use (or Validate): changing them afterwards has no effect, so build a new
// Verifier to change keys.
type Verifier struct {
	// Keys accepted, found by the kid of the signature. During a rotation,
	// list the new key and the old one; remove the old one once the gateway
	// signs with the new one (and MaxAge has passed). Required.
	Keys []Key
	// MaxAge is how old a signature may be; 0 means DefaultMaxAge (30s).
	MaxAge time.Duration
	// MaxSkew is how far in the future a signature may be dated, for clock
	// differences; 0 means DefaultMaxSkew (5s).
	MaxSkew time.Duration
	// Prefix of the identity header names; "" means DefaultPrefix.
	Prefix string
	// OnRefuse, when set, is called by Middleware with every refused
	// request and the reason, for logging (the client learns nothing).
	OnRefuse func(r *http.Request, err error)

	once sync.Once
	st   *verifierState
	err  error
}

type verifierState struct {
	keys            []*keyState
	names           headerNames
	maxAge, maxSkew time.Duration
}

// NewVerifier returns a validated Verifier with the default MaxAge and
// MaxSkew.
func NewVerifier(prefix string, keys ...Key) (*Verifier, error) {
	v := &Verifier{Keys: keys, Prefix: prefix}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return v, nil
}

// Validate checks the configuration (ErrConfig) and prepares the Verifier.
func (v *Verifier) Validate() error {
	_, err := v.state()
	return err
}

func (v *Verifier) state() (*verifierState, error) {
	v.once.Do(func() {
		names, err := namesFor(v.Prefix)
		if err == nil {
			err = validateKeys(v.Keys)
		}
		if err == nil && (v.MaxAge < 0 || v.MaxSkew < 0) {
			err = fmt.Errorf("%w: negative MaxAge or MaxSkew", ErrConfig)
		}
		if err != nil {
			v.err = err
			return
		}
		st := &verifierState{names: names, maxAge: v.MaxAge, maxSkew: v.MaxSkew}
		if st.maxAge == 0 {
			st.maxAge = DefaultMaxAge
		}
		if st.maxSkew == 0 {
			st.maxSkew = DefaultMaxSkew
		}
		for _, k := range v.Keys {
			st.keys = append(st.keys, newKeyState(k))
		}
		v.st = st
	})
	return v.st, v.err
}

func (st *verifierState) key(id string) *keyState {
	for _, k := range st.keys {
		if k.id == id {
			return k
		}
	}
	return nil
}

// Verify checks the signature of r and returns the identity it vouches for.
// In order:
//
//   - no signature header: ErrNoIdentity if no identity header is present
//     either (an anonymous request), else ErrNoSignature;
//   - a malformed signature header, or several: ErrMalformed;
//   - a kid that names no configured key: ErrUnknownKey;
//   - an identity header with several values or a value that cannot have
//     crossed the wire: ErrMalformed;
//   - a MAC that does not match (compared in constant time): ErrBadSignature;
//   - a timestamp older than MaxAge or later than now+MaxSkew: ErrExpired;
//   - then the identity is parsed as FromRequest does (ErrNoIdentity,
//     ErrMalformed; the gateway never signs such headers).
//
// The MAC is checked before the age, so ErrExpired means a genuine but
// stale signature (or clocks apart), ErrBadSignature tampering or a wrong
// secret.
func (v *Verifier) Verify(r *http.Request, now time.Time) (Identity, error) {
	st, err := v.state()
	if err != nil {
		return Identity{}, err
	}
	sigs := r.Header[st.names.signature]
	switch len(sigs) {
	case 0:
		for _, name := range st.names.fields {
			if len(r.Header[name]) > 0 {
				return Identity{}, ErrNoSignature
			}
		}
		return Identity{}, ErrNoIdentity
	case 1:
	default:
		return Identity{}, fmt.Errorf("%w: signature header: more than one value", ErrMalformed)
	}
	sh, err := parseSignature(sigs[0])
	if err != nil {
		return Identity{}, err
	}
	ks := st.key(sh.kid)
	if ks == nil {
		return Identity{}, ErrUnknownKey
	}
	vals, _, err := readFields(r.Header, &st.names)
	if err != nil {
		return Identity{}, err
	}
	method := methodOf(r)
	path, err := requestPath(r.URL)
	if err == nil {
		err = checkRequestLine(method, path)
	}
	if err != nil {
		return Identity{}, err
	}
	if !ks.verify(&sh, method, path, &vals) {
		return Identity{}, ErrBadSignature
	}
	signed := time.Unix(sh.ts, 0)
	if now.Sub(signed) > st.maxAge {
		return Identity{}, fmt.Errorf("%w: older than %v", ErrExpired, st.maxAge)
	}
	if signed.Sub(now) > st.maxSkew {
		return Identity{}, fmt.Errorf("%w: dated more than %v ahead", ErrExpired, st.maxSkew)
	}
	return parseFields(&vals)
}
