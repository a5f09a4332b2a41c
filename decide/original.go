package decide

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/deplo-sh/deplo-auth/internal/httptoken"
)

// Source says where a verify request (another proxy asking "may this request
// pass?") names the original request it asks about.
type Source uint8

const (
	// SourceAuto reads X-Forwarded-Method/-Uri when either is present, else
	// the X-Original-* headers.
	SourceAuto Source = iota
	// SourceForwarded reads X-Forwarded-Method and X-Forwarded-Uri (Traefik
	// ForwardAuth, Caddy forward_auth).
	SourceForwarded
	// SourceOriginal reads X-Original-Method with X-Original-URI and/or
	// X-Original-URL (nginx auth_request, ingress-nginx auth-url).
	SourceOriginal
	// SourceEnvoy takes the verify request's own method and its path less a
	// prefix (Envoy ext_authz HTTP service, Gateway API ExternalAuth).
	SourceEnvoy
)

// ParseSource reads the `from` option: auto, forwarded, original or envoy.
func ParseSource(s string) (Source, bool) {
	switch s {
	case "", "auto":
		return SourceAuto, true
	case "forwarded":
		return SourceForwarded, true
	case "original":
		return SourceOriginal, true
	case "envoy":
		return SourceEnvoy, true
	}
	return 0, false
}

// The headers that name the original request.
const (
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderForwardedURI    = "X-Forwarded-Uri"
	HeaderOriginalMethod  = "X-Original-Method"
	HeaderOriginalURI     = "X-Original-Uri"
	HeaderOriginalURL     = "X-Original-Url"
)

// Original is the request a verify request asks about, in the form Request
// wants it: Path unescaped and RawPath its escaped form when that differs
// (as url.URL sets them), EscapedPath as on the request line (what an
// identity signature covers).
type Original struct {
	Method, Path, RawPath, EscapedPath string
}

// ErrNoOriginal is wrapped by every OriginalOf error: the verify request
// names no complete, well-formed original request. The text says which part
// is wrong and never quotes client input.
var ErrNoOriginal = errors.New("no complete original request")

func noOriginal(why string) error { return &originalError{why} }

type originalError struct{ why string }

func (e *originalError) Error() string { return ErrNoOriginal.Error() + ": " + e.why }
func (e *originalError) Unwrap() error { return ErrNoOriginal }

// OriginalOf returns the original request named by a verify request with
// header h, method and target (its own request-target: escaped path and
// query, as url.URL.RequestURI gives it). prefix is the envoy path prefix.
// Each naming header must appear exactly once; a method must be an HTTP
// token and a URI an origin-form path ("/…"), or for X-Original-URL an
// absolute http(s) URL. The path's canonical form is not checked here:
// Decide refuses a non-canonical path as it does a proxied one.
func OriginalOf(src Source, h http.Header, method, target, prefix string) (Original, error) {
	switch src {
	case SourceAuto:
		return fromEither(h)
	case SourceForwarded:
		return fromForwardedHeaders(h)
	case SourceOriginal:
		return fromOriginalHeaders(h)
	case SourceEnvoy:
		rest, ok := strings.CutPrefix(target, prefix)
		if !ok || prefix == "" || !strings.HasPrefix(rest, "/") {
			return Original{}, noOriginal("the path does not start with path_prefix")
		}
		return originalFrom(method, rest, false)
	}
	return Original{}, noOriginal("unknown source")
}

// fromEither reads the forwarded headers when either is present, else the
// original ones. When a request carries both kinds they must name the same
// request: a proxy sets one kind and passes the client's headers on, so a
// client could otherwise choose what is decided (nginx passing a client's
// X-Forwarded-Uri: /healthz beside its own X-Original-URI).
func fromEither(h http.Header) (Original, error) {
	forwarded := has(h, HeaderForwardedMethod) || has(h, HeaderForwardedURI)
	original := has(h, HeaderOriginalMethod) || has(h, HeaderOriginalURI) || has(h, HeaderOriginalURL)
	if !forwarded {
		return fromOriginalHeaders(h)
	}
	f, err := fromForwardedHeaders(h)
	if err != nil || !original {
		return f, err
	}
	o, err := fromOriginalHeaders(h)
	if err != nil {
		return o, err
	}
	if f != o {
		return Original{}, noOriginal("the X-Forwarded-* and X-Original-* headers name different requests")
	}
	return f, nil
}

func has(h http.Header, name string) bool {
	_, ok := h[name]
	return ok
}

func fromForwardedHeaders(h http.Header) (Original, error) {
	m, err := single(h, HeaderForwardedMethod)
	if err != nil {
		return Original{}, err
	}
	uri, err := single(h, HeaderForwardedURI)
	if err != nil {
		return Original{}, err
	}
	return originalFrom(m, uri, false)
}

// fromOriginalHeaders reads X-Original-Method with X-Original-URI and/or
// X-Original-URL; with both, they must name the same path and query.
func fromOriginalHeaders(h http.Header) (Original, error) {
	m, err := single(h, HeaderOriginalMethod)
	if err != nil {
		return Original{}, err
	}
	hasURI, hasURL := has(h, HeaderOriginalURI), has(h, HeaderOriginalURL)
	if !hasURI && !hasURL {
		return Original{}, noOriginal(HeaderOriginalURI + " or " + HeaderOriginalURL + " is required")
	}
	var fromURI, fromURL Original
	var query, urlQuery string
	if hasURI {
		uri, err := single(h, HeaderOriginalURI)
		if err != nil {
			return Original{}, err
		}
		if fromURI, query, err = parseOriginal(m, uri, false); err != nil {
			return Original{}, err
		}
	}
	if hasURL {
		u, err := single(h, HeaderOriginalURL)
		if err != nil {
			return Original{}, err
		}
		if fromURL, urlQuery, err = parseOriginal(m, u, true); err != nil {
			return Original{}, err
		}
	}
	switch {
	case !hasURL:
		return fromURI, nil
	case !hasURI:
		return fromURL, nil
	case fromURI.EscapedPath != fromURL.EscapedPath || fromURI.Path != fromURL.Path || query != urlQuery:
		return Original{}, noOriginal(HeaderOriginalURI + " and " + HeaderOriginalURL + " name different requests")
	}
	return fromURI, nil
}

// single returns the one value of header name.
func single(h http.Header, name string) (string, error) {
	switch v := h[name]; len(v) {
	case 0:
		return "", noOriginal(name + " is missing")
	case 1:
		if v[0] == "" {
			return "", noOriginal(name + " is empty")
		}
		return v[0], nil
	}
	return "", noOriginal(name + " appears more than once")
}

func originalFrom(method, uri string, absolute bool) (Original, error) {
	o, _, err := parseOriginal(method, uri, absolute)
	return o, err
}

// parseOriginal checks method and parses uri: an origin-form request-target
// ("/path?query"), or with absolute an http(s) URL with a host. It returns
// the raw query too, for comparing two names of one request.
func parseOriginal(method, uri string, absolute bool) (Original, string, error) {
	if !validMethod(method) {
		return Original{}, "", noOriginal("the method is not an HTTP token")
	}
	if !absolute {
		if path, query, ok := plainOriginForm(uri); ok {
			return Original{Method: method, Path: path, EscapedPath: path}, query, nil
		}
	}
	return parseURI(method, uri, absolute)
}

// parseURI is parseOriginal's general path, through url.ParseRequestURI:
// every request-target plainOriginForm leaves to it, and X-Original-URL.
func parseURI(method, uri string, absolute bool) (Original, string, error) {
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f || c == '#' {
			return Original{}, "", noOriginal("the URI holds a space, a control character or a fragment")
		}
	}
	if !absolute && !strings.HasPrefix(uri, "/") {
		return Original{}, "", noOriginal("the URI is not a path")
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return Original{}, "", noOriginal("the URI does not parse")
	}
	if absolute {
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
			return Original{}, "", noOriginal("the URL is not an absolute http(s) URL")
		}
		if u.Path == "" {
			u.Path = "/"
		}
	}
	return Original{Method: method, Path: u.Path, RawPath: u.RawPath, EscapedPath: u.EscapedPath()}, u.RawQuery, nil
}

// validMethod reports whether m is an RFC 9110 token (case is kept: Decide
// deals with methods that differ from a route's only in case).
func validMethod(m string) bool {
	return len(m) <= 32 && httptoken.Valid(m)
}

// The classes of a path byte to plainOriginForm. plainByte: the bytes
// url.URL's path escaping leaves as they are (unreserved, and "$&+,=:@"),
// less ';' (a path-parameter separator to some upstreams) and '%' (an
// escape, which makes Path and RawPath differ); a path of these and "/" is
// its own unescaped and escaped form. Any other byte (class 0) leaves the
// target to parseURI.
const (
	plainOther = iota
	plainByte
	plainSlash
	plainQuery
)

var plainPathClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = plainByte
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = plainByte
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = plainByte
	}
	for _, c := range "-._~$&+,=:@" {
		t[c] = plainByte
	}
	t['/'], t['?'] = plainSlash, plainQuery
	return t
}()

// plainQueryByte marks the bytes plainOriginForm accepts in a query:
// printable ASCII but '#' (url.ParseRequestURI keeps a query as it is, so
// only what parseURI refuses before parsing is left out, and non-ASCII to
// stay conservative).
var plainQueryByte = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = c != '#'
	}
	return t
}()

// plainOriginForm splits uri into path and raw query when it is a plain
// origin-form request-target, the form proxies send nearly always
// ("/v1/workspaces/ws_acme/projects?x=1"): a path that starts with "/",
// holds only plainByte bytes and "/", no empty segment ("//") and no "." or
// ".." segment, then optionally "?" and a query of plainQueryByte bytes.
// For such a target url.ParseRequestURI gives that path as Path and as
// EscapedPath, no RawPath, and that query as RawQuery (FuzzPlainOriginForm
// checks this), so parseOriginal skips the parse and its allocation. Any
// other target (ok false) goes through parseURI as before; in particular
// every path Decide refuses as non-canonical (dot and empty segments,
// escapes, ';') is one plainOriginForm leaves to parseURI.
func plainOriginForm(uri string) (path, query string, ok bool) {
	if uri == "" || uri[0] != '/' {
		return "", "", false
	}
	end := len(uri)
	segment := 1 // where the segment being read starts
scan:
	for i := 1; i < len(uri); i++ {
		switch plainPathClass[uri[i]] {
		case plainByte:
		case plainSlash:
			if dotSegment(uri[segment:i]) {
				return "", "", false
			}
			segment = i + 1
		case plainQuery:
			end = i
			break scan
		default:
			return "", "", false
		}
	}
	if last := uri[segment:end]; last == "." || last == ".." {
		return "", "", false
	}
	for i := end + 1; i < len(uri); i++ {
		if !plainQueryByte[uri[i]] {
			return "", "", false
		}
	}
	path = uri[:end]
	if end < len(uri) {
		query = uri[end+1:]
	}
	return path, query, true
}

// dotSegment reports whether a segment before a "/" is empty (the "//" of
// "/a//b"), "." or "..". Only the last segment may be empty ("/a/").
func dotSegment(s string) bool {
	return s == "" || s == "." || s == ".."
}
