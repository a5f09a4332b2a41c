package identity

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Signer signs the identity the gateway forwards. It signs with Keys[0]; the
// other keys are only validated (list the keys upstreams still accept in
// their Verifier instead). A Signer is safe for concurrent use. Its fields
// are read once, on first use (or Validate): changing them afterwards has no
// effect, so build a new Signer to rotate keys.
type Signer struct {
	// Keys: Keys[0] signs. Required.
	Keys []Key
	// Prefix of the identity header names; "" means DefaultPrefix. The
	// signature goes in Prefix+"Signature".
	Prefix string

	once sync.Once
	st   *signerState
	err  error
}

type signerState struct {
	key   *keyState
	names headerNames
}

// NewSigner returns a validated Signer.
func NewSigner(prefix string, keys ...Key) (*Signer, error) {
	s := &Signer{Keys: keys, Prefix: prefix}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks the configuration (ErrConfig) and prepares the Signer.
func (s *Signer) Validate() error {
	_, err := s.state()
	return err
}

func (s *Signer) state() (*signerState, error) {
	s.once.Do(func() {
		names, err := namesFor(s.Prefix)
		if err == nil {
			err = validateKeys(s.Keys)
		}
		if err != nil {
			s.err = err
			return
		}
		s.st = &signerState{key: newKeyState(s.Keys[0]), names: names}
	})
	return s.st, s.err
}

// SignRequest signs the identity headers already on r and sets the
// signature header (replacing any). It is what the gateway calls on the
// request it forwards, after setting the identity headers: it signs r.Method,
// the escaped path of r.URL ("/" when empty) and the identity header values
// exactly as they are on r.
//
// It refuses (without touching r) headers the Verifier would refuse: a
// missing Auth or Subject (ErrNoIdentity), a header with several values, a
// value with a control character or a leading or trailing space (HTTP
// strips those in transit, so the upstream would see another value), an
// unknown Auth or scope, unsorted scopes (ErrMalformed). The request must
// then not be forwarded.
//
// The path must be the one the upstream receives: sign after any rewrite
// of the path.
func (s *Signer) SignRequest(r *http.Request, now time.Time) error {
	st, err := s.state()
	if err != nil {
		return err
	}
	vals, _, err := readFields(r.Header, &st.names)
	if err != nil {
		return err
	}
	if _, err := parseFields(&vals); err != nil {
		return err
	}
	path, err := requestPath(r.URL)
	if err != nil {
		return err
	}
	v, err := st.sign(methodOf(r), path, &vals, now)
	if err != nil {
		return err
	}
	r.Header[st.names.signature] = []string{v}
	return nil
}

// Sign returns the signature header value for a request with this method,
// escaped path (as on the request line, without the query) and identity, as
// Parser.SetHeaders writes it. SignRequest is the same for the headers on a
// request.
func (s *Signer) Sign(method, path string, id Identity, now time.Time) (string, error) {
	st, err := s.state()
	if err != nil {
		return "", err
	}
	vals, err := id.fields()
	if err != nil {
		return "", err
	}
	return st.sign(method, path, &vals, now)
}

func (st *signerState) sign(method, path string, vals *[numFields]string, now time.Time) (string, error) {
	if err := checkRequestLine(method, path); err != nil {
		return "", err
	}
	ts := now.Unix()
	if ts < 0 || ts >= 1e18 {
		return "", fmt.Errorf("%w: time out of range", ErrMalformed)
	}
	return st.key.sign(ts, method, path, vals), nil
}

// methodOf returns the request method as it goes on the wire ("" means GET
// for an outgoing request).
func methodOf(r *http.Request) string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}
