package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/deplo-sh/deplo-auth/policy"
)

// identityHeaders strips client-sent identity headers and sets the verified
// ones.
type identityHeaders struct {
	// folded is the prefix in the form foldHeaderByte gives every byte.
	folded string
	// The canonical header names set for the upstream.
	auth, subject, workspace, project, scopes string
}

func newIdentityHeaders(prefix string) (identityHeaders, error) {
	if prefix == "" {
		return identityHeaders{}, errors.New("must not be empty")
	}
	for i := 0; i < len(prefix); i++ {
		if !isTokenChar(prefix[i]) {
			return identityHeaders{}, errors.New("must consist of header name characters")
		}
	}
	folded := make([]byte, len(prefix))
	for i := range folded {
		folded[i] = foldHeaderByte(prefix[i])
	}
	return identityHeaders{
		folded:    string(folded),
		auth:      canonicalHeader(prefix + "Auth"),
		subject:   canonicalHeader(prefix + "Subject"),
		workspace: canonicalHeader(prefix + "Workspace"),
		project:   canonicalHeader(prefix + "Project"),
		scopes:    canonicalHeader(prefix + "Scopes"),
	}, nil
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

func (ih *identityHeaders) matches(name string) bool {
	if len(name) < len(ih.folded) {
		return false
	}
	for i := 0; i < len(ih.folded); i++ {
		if foldHeaderByte(name[i]) != ih.folded[i] {
			return false
		}
	}
	return true
}

// strip removes every header and declared trailer whose name folds to the
// prefix. Trailers arrive only when the body has been read, into the
// r.Trailer map that Caddy's reverse proxy copies at EOF; the body is
// wrapped so that they are removed at that moment too.
func (ih *identityHeaders) strip(r *http.Request) {
	for name := range r.Header {
		if ih.matches(name) {
			delete(r.Header, name)
		}
	}
	if conn, ok := r.Header["Connection"]; ok {
		ih.stripConnectionTokens(r.Header, conn)
	}
	if r.Trailer != nil {
		for name := range r.Trailer {
			if ih.matches(name) {
				delete(r.Trailer, name)
			}
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &trailerStripper{ReadCloser: r.Body, r: r, ih: ih}
		}
	}
}

// stripConnectionTokens removes identity header names from Connection. A
// proxy drops every header named there as hop-by-hop, after deplo_auth has
// set the identity: "Connection: X-Deplo-Project" would otherwise make a
// project-scoped credential reach the upstream as a workspace-wide one.
func (ih *identityHeaders) stripConnectionTokens(h http.Header, values []string) {
	named := false
	for _, v := range values {
		for rest := v; rest != "" && !named; {
			var tok string
			tok, rest, _ = strings.Cut(rest, ",")
			named = ih.matches(strings.TrimSpace(tok))
		}
	}
	if !named { // the common case ("keep-alive") allocates nothing
		return
	}
	var kept []string
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !ih.matches(tok) {
				kept = append(kept, tok)
			}
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

// trailerStripper removes identity trailers when the body reaches EOF,
// after net/http has filled them in and before anything downstream reads
// them.
type trailerStripper struct {
	io.ReadCloser
	r  *http.Request
	ih *identityHeaders
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		for name := range t.r.Trailer {
			if t.ih.matches(name) {
				delete(t.r.Trailer, name)
			}
		}
	}
	return n, err
}

// set writes the identity of p; one allocation backs all the values.
// Workspace and project headers are left out when the credential has none.
func (ih *identityHeaders) set(hdr http.Header, p *policy.Principal) {
	vals := make([]string, 5)
	vals[0] = p.Kind.String()
	vals[1] = p.Subject
	vals[2] = p.Workspace
	vals[3] = p.Project
	vals[4] = p.Scopes.String()
	hdr[ih.auth] = vals[0:1:1]
	hdr[ih.subject] = vals[1:2:2]
	if p.Workspace != "" {
		hdr[ih.workspace] = vals[2:3:3]
	}
	if p.Project != "" {
		hdr[ih.project] = vals[3:4:4]
	}
	hdr[ih.scopes] = vals[4:5:5]
}

// isTokenChar reports whether c may appear in a header name (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
