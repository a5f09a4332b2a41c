package identity

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Headers is the gateway's side of the identity headers under one prefix:
// it strips every client-sent spelling of them (and the method- and
// URL-override headers) and writes a verified identity, signed when it has
// a Signer. It is safe for concurrent use.
type Headers struct {
	names  headerNames
	folded string // the prefix in the form foldHeaderByte gives every byte
	signer *signerState
}

// NewHeaders returns the Headers of prefix ("" means DefaultPrefix). With a
// signer, Write also sets the signature header; the signer's prefix must be
// the same.
func NewHeaders(prefix string, signer *Signer) (*Headers, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	names, err := namesFor(prefix)
	if err != nil {
		return nil, err
	}
	h := &Headers{names: names, folded: fold(prefix)}
	if signer != nil {
		st, err := signer.state()
		if err != nil {
			return nil, err
		}
		if st.names != names {
			return nil, fmt.Errorf("%w: the signer's prefix differs from the headers'", ErrConfig)
		}
		h.signer = st
	}
	return h, nil
}

func fold(s string) string {
	b := make([]byte, len(s))
	for i := range b {
		b[i] = foldHeaderByte(s[i])
	}
	return string(b)
}

// foldHeaderByte maps the spellings an upstream may read as one name to one
// byte: case is ignored, and "_" and "." read as "-" (CGI, PHP, nginx with
// underscores_in_headers, and many frameworks normalise them).
func foldHeaderByte(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// Names returns the canonical identity header names in the order Auth,
// Subject, Workspace, Project, Scopes, then the signature header.
func (h *Headers) Names() []string {
	return append(h.names.fields[:numFields:numFields], h.names.signature)
}

// Matches reports whether an upstream could read name as an identity header:
// it starts with the prefix once case is ignored and "_" and "." read as "-".
func (h *Headers) Matches(name string) bool {
	if len(name) < len(h.folded) {
		return false
	}
	for i := 0; i < len(h.folded); i++ {
		if foldHeaderByte(name[i]) != h.folded[i] {
			return false
		}
	}
	return true
}

// overrideHeaders are headers with which frameworks (Rails, Laravel and
// Symfony, Express middleware, IIS URL rewriting) replace the method or the
// URL a request is routed by. The decision was made on the request's own
// method and path, so they never reach the upstream. Folded form.
var overrideHeaders = [...]string{
	"x-http-method-override",
	"x-http-method",
	"x-method-override",
	"x-original-url",
	"x-rewrite-url",
}

// IsOverride reports whether an upstream could read name as a method- or
// URL-override header (any case, "_" or "." for "-").
func IsOverride(name string) bool {
	// Decided on the length for almost every header, so that stripping
	// costs next to nothing more.
	switch len(name) {
	case 13:
		return foldedEqual(name, overrideHeaders[1]) || foldedEqual(name, overrideHeaders[4])
	case 14:
		return foldedEqual(name, overrideHeaders[3])
	case 17:
		return foldedEqual(name, overrideHeaders[2])
	case 22:
		return foldedEqual(name, overrideHeaders[0])
	}
	return false
}

func foldedEqual(name, folded string) bool {
	for i := 0; i < len(folded); i++ {
		if foldHeaderByte(name[i]) != folded[i] {
			return false
		}
	}
	return true
}

// strips reports whether Strip removes name. Most header names are decided
// by mayStrip, inlined, on their first byte: the identity prefix and the
// override headers both start with a known one.
func (h *Headers) strips(name string) bool {
	return h.mayStrip(name) && (h.Matches(name) || IsOverride(name))
}

func (h *Headers) mayStrip(name string) bool {
	if name == "" {
		return false
	}
	c := foldHeaderByte(name[0])
	return c == h.folded[0] || c == 'x'
}

// Strip removes from r every header and declared trailer that an upstream
// could read as an identity or override header, and such names from
// Connection. Trailers arrive only when the body has been read, into the
// r.Trailer map that a reverse proxy copies at EOF; the body is wrapped so
// that they are removed at that moment too.
func (h *Headers) Strip(r *http.Request) {
	for name := range r.Header {
		if h.mayStrip(name) && h.strips(name) {
			delete(r.Header, name)
		}
	}
	if conn, ok := r.Header["Connection"]; ok {
		h.stripConnectionTokens(r.Header, conn)
	}
	if r.Trailer != nil {
		for name := range r.Trailer {
			if h.strips(name) {
				delete(r.Trailer, name)
			}
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &trailerStripper{ReadCloser: r.Body, r: r, h: h}
		}
	}
}

// stripConnectionTokens removes identity header names from Connection. A
// proxy drops every header named there as hop-by-hop, after the gateway has
// set the identity: "Connection: X-Deplo-Project" would otherwise make a
// project-scoped credential reach the upstream as a workspace-wide one.
func (h *Headers) stripConnectionTokens(hdr http.Header, values []string) {
	named := false
	for _, v := range values {
		for rest := v; rest != "" && !named; {
			var tok string
			tok, rest, _ = strings.Cut(rest, ",")
			named = h.strips(strings.TrimSpace(tok))
		}
	}
	if !named { // the common case ("keep-alive") allocates nothing
		return
	}
	var kept []string
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !h.strips(tok) {
				kept = append(kept, tok)
			}
		}
	}
	if len(kept) == 0 {
		delete(hdr, "Connection")
		return
	}
	hdr["Connection"] = []string{strings.Join(kept, ", ")}
}

// trailerStripper removes identity trailers when the body reaches EOF,
// after net/http has filled them in and before anything downstream reads
// them.
type trailerStripper struct {
	io.ReadCloser
	r *http.Request
	h *Headers
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		for name := range t.r.Trailer {
			if t.h.strips(name) {
				delete(t.r.Trailer, name)
			}
		}
	}
	return n, err
}

// Signs reports whether Write signs: only then does it need the path.
func (h *Headers) Signs() bool { return h.signer != nil }

// HeaderValues backs the values Write sets, so that a caller can allocate
// them together with its other per-request state.
type HeaderValues [numFields + 1]string

// Write sets id on dst as the gateway forwards it: Auth, Subject and Scopes
// always, Workspace and Project only when not empty; with a signer, the
// signature over id, method and the escaped path (as on the request line the
// upstream receives, "/" when empty; needed only when Signs) at now. The
// values are stored in vals, so that a caller can allocate them with its
// other per-request state; vals must not be reused while dst is. dst must
// hold no identity header (Strip first).
func (h *Headers) Write(dst http.Header, id *Identity, method, path string, now time.Time, vals *HeaderValues) error {
	vals[fAuth] = id.Method
	vals[fSubject] = id.Subject
	vals[fWorkspace] = id.Workspace
	vals[fProject] = id.Project
	vals[fScopes] = id.Scopes.String()
	if h.signer != nil {
		// The signature covers the values as they go out, so it is made from
		// them, after the checks the upstream's parser will make.
		fields, err := id.fields()
		if err != nil {
			return err
		}
		if path == "" {
			path = "/"
		}
		sig, err := h.signer.sign(method, path, &fields, now)
		if err != nil {
			return err
		}
		vals[numFields] = sig
		dst[h.names.signature] = vals[numFields : numFields+1 : numFields+1]
	}
	dst[h.names.fields[fAuth]] = vals[fAuth : fAuth+1 : fAuth+1]
	dst[h.names.fields[fSubject]] = vals[fSubject : fSubject+1 : fSubject+1]
	if id.Workspace != "" {
		dst[h.names.fields[fWorkspace]] = vals[fWorkspace : fWorkspace+1 : fWorkspace+1]
	}
	if id.Project != "" {
		dst[h.names.fields[fProject]] = vals[fProject : fProject+1 : fProject+1]
	}
	dst[h.names.fields[fScopes]] = vals[fScopes : fScopes+1 : fScopes+1]
	return nil
}
