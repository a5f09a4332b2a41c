// Package policy is the pure decision logic of deplo-auth: scopes, the route
// table and its matching, workspace and project binding, and the allow/deny
// decision with a reason. It does no I/O and imports nothing from Caddy, so it
// can be tested and fuzzed on its own.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/deplo-sh/deplo-auth/grant"
)

// Access says what a route demands of a request.
type Access uint8

// The kinds of access a route can demand.
const (
	// AccessScopes needs a valid credential holding every listed scope.
	AccessScopes Access = iota
	// AccessAuthenticated needs any valid credential.
	AccessAuthenticated
	// AccessPublic needs no credential; no identity is forwarded.
	AccessPublic
)

// Default says what happens to requests that match no route.
type Default uint8

// The defaults for requests that match no route.
const (
	// DefaultDeny refuses them (after authentication: 401 without a
	// credential, 403 with one).
	DefaultDeny Default = iota
	// DefaultAuthenticated lets any valid credential through, one bound to
	// no workspace included; project-scoped credentials are refused, because
	// no project binding can be checked. A request that spells a listed
	// route differently (letter case, a trailing slash) is refused, never
	// decided by the default (see Match.VariantOf).
	DefaultAuthenticated
)

// RouteSpec is one configured route.
type RouteSpec struct {
	// Method is an HTTP method, or "" or "*" for any. GET also matches HEAD.
	Method string
	// Path is a net/http.ServeMux path pattern. Wildcards named workspace
	// and project bind the credential to the request's workspace and
	// project.
	Path string
	// Access is what the route demands.
	Access Access
	// Scopes the credential must all hold (AccessScopes only); admin
	// satisfies any.
	Scopes grant.ScopeSet
	// Via restricts the credential kinds the route accepts (empty: any).
	Via grant.KindSet
	// ProjectTokens lets project-scoped credentials use a route that does
	// not bind {project}; the upstream must then confine its answer to
	// X-Deplo-Project.
	ProjectTokens bool
}

// Route is a compiled route.
type Route struct {
	RouteSpec
	pattern string
}

// Pattern returns the route as written, e.g. "GET /v1/workspaces/{workspace}",
// for logs; it has bounded cardinality and never contains request data.
func (r *Route) Pattern() string { return r.pattern }

// Policy is an immutable, compiled route table. It is safe for concurrent use.
type Policy struct {
	mux          mux[*Route]
	def          Default
	defaultRoute *Route
	// spellings holds every route case-folded, with and without a trailing
	// slash; under DefaultAuthenticated, Match consults it only for a
	// request that matched no route.
	spellings mux[*Route]
	warnings  []RouteWarning
}

// RouteWarning is a route that loads but is likely a mistake; Index is its
// 0-based position. The adapter logs it at load.
type RouteWarning struct {
	Index   int
	Pattern string
	Message string
}

func (w RouteWarning) String() string {
	return fmt.Sprintf("route %d (%s): %s", w.Index+1, w.Pattern, w.Message)
}

// Warnings returns the routes New accepted with a warning, in order.
func (p *Policy) Warnings() []RouteWarning { return p.warnings }

// RouteError is a mistake in one route; Index is its 0-based position.
type RouteError struct {
	Index   int
	Pattern string
	Err     error
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("route %d (%s): %v", e.Index+1, e.Pattern, e.Err)
}

func (e *RouteError) Unwrap() error { return e.Err }

// New compiles routes. It fails on a bad pattern, a method with lower-case
// letters, a conflict between two routes, or a route whose access and scopes
// disagree, with a *RouteError. Routes that load but are likely mistakes are
// in Warnings.
func New(routes []RouteSpec, def Default) (*Policy, error) {
	p := &Policy{def: def}
	for i, spec := range routes {
		method := spec.Method
		if method == "*" {
			method = ""
		}
		pattern := spec.Path
		if method != "" {
			pattern = method + " " + spec.Path
		}
		fail := func(format string, args ...any) error {
			return &RouteError{Index: i, Pattern: pattern, Err: fmt.Errorf(format, args...)}
		}
		switch spec.Access {
		case AccessScopes:
			if spec.Scopes == 0 {
				return nil, fail("needs at least one scope, or public, or authenticated")
			}
		case AccessPublic:
			if spec.Scopes != 0 || spec.Via != 0 || spec.ProjectTokens {
				return nil, fail("a public route takes no scopes and no credential options")
			}
		case AccessAuthenticated:
			if spec.Scopes != 0 {
				return nil, fail("authenticated cannot be combined with scopes")
			}
		default:
			return nil, fail("unknown access %d", spec.Access)
		}
		if !strings.HasPrefix(spec.Path, "/") {
			return nil, fail("path pattern must start with /")
		}
		// With every listed method in upper case, a request method that is
		// listed in no letter case but matches one ignoring case is a case
		// variant (see Match), and "post" and "POST" can never be two
		// routes decided differently.
		if strings.ToUpper(method) != method {
			return nil, fail("method %q must be written in upper case (many upstreams upper-case the request method, so %q and %q would be one method to them)", method, method, strings.ToUpper(method))
		}
		spec.Method = method
		r := &Route{RouteSpec: spec, pattern: pattern}
		if err := p.mux.add(pattern, r); err != nil {
			return nil, fail("%w", err)
		}
		parsed := p.mux.pats[len(p.mux.pats)-1]
		if def == DefaultAuthenticated {
			p.spellings.addSpellings(parsed, r)
		}
		if slices.Contains(parsed.names, "project") && !slices.Contains(parsed.names, "workspace") {
			p.warnings = append(p.warnings, RouteWarning{Index: i, Pattern: pattern,
				Message: "binds {project} without {workspace}: project names are unique only within a workspace, so a project-scoped credential passes for the same project name in every workspace, and a workspace-scoped one for any project"})
		}
	}
	switch def {
	case DefaultDeny:
	case DefaultAuthenticated:
		p.defaultRoute = &Route{
			RouteSpec: RouteSpec{Access: AccessAuthenticated},
			pattern:   "default",
		}
	default:
		return nil, fmt.Errorf("unknown default %d", def)
	}
	return p, nil
}

// Match is the route a request matched and the values of its bindings.
type Match struct {
	// Route is nil when no route matched and the default is deny, or when
	// VariantOf is set.
	Route *Route
	// VariantOf is the listed route that the request spells differently,
	// when Match refuses it for that (Authorize: ReasonRouteVariant): a
	// method that differs only in letter case from the method of a route
	// matching the path, under either default; or, under
	// DefaultAuthenticated, a request matching no route that matches this
	// one once letter case (method and path) and a trailing slash are
	// ignored. Such requests are refused rather than decided as VariantOf:
	// an upstream that is strict about case and slashes would route them
	// elsewhere, so neither that route's decision nor another's is safe for
	// every upstream.
	VariantOf *Route
	// Workspace and Project are the values of the {workspace} and
	// {project} wildcards when the route binds them.
	Workspace, Project           string
	BindsWorkspace, BindsProject bool
}

// Match finds the most specific route for method and path. path must be the
// cleaned, unescaped path (see ValidatePath). A request spelling a listed
// route differently matches no route but sets VariantOf.
func (p *Policy) Match(method, path string) Match {
	var buf [8]string
	r, names, values, ok := p.mux.match(method, path, buf[:0])
	// A route with a method matched only if the request's method is listed
	// as written (or is HEAD): no case variant then, and no more work.
	if (!ok || r.Method == "") && maybeCaseVariant(method) {
		if v, found := p.mux.matchMethodCaseVariant(method, path); found {
			return Match{VariantOf: v}
		}
	}
	if !ok {
		if p.def == DefaultAuthenticated {
			if v, found := p.spellings.matchSpelling(method, path); found {
				return Match{VariantOf: v}
			}
		}
		return Match{Route: p.defaultRoute}
	}
	m := Match{Route: r}
	for i, name := range names {
		switch name {
		case "workspace":
			m.Workspace, m.BindsWorkspace = values[i], true
		case "project":
			m.Project, m.BindsProject = values[i], true
		}
	}
	return m
}

// Public reports whether the request needs no credential.
func (m *Match) Public() bool { return m.Route != nil && m.Route.Access == AccessPublic }

// Reason explains a decision, for logs and metrics. The set is fixed.
type Reason uint8

// The reasons for a decision.
const (
	ReasonAllowed Reason = iota
	ReasonPublic
	ReasonNoRoute
	ReasonKindNotAllowed
	ReasonNoWorkspace
	ReasonWorkspaceMismatch
	ReasonProjectMismatch
	ReasonProjectTokenNotAllowed
	ReasonInsufficientScope
	ReasonRouteVariant
)

var reasonNames = [...]string{
	ReasonAllowed:                "allowed",
	ReasonPublic:                 "public",
	ReasonNoRoute:                "no_route",
	ReasonKindNotAllowed:         "credential_kind_not_allowed",
	ReasonNoWorkspace:            "no_workspace",
	ReasonWorkspaceMismatch:      "workspace_mismatch",
	ReasonProjectMismatch:        "project_mismatch",
	ReasonProjectTokenNotAllowed: "project_token_not_allowed",
	ReasonInsufficientScope:      "insufficient_scope",
	ReasonRouteVariant:           "route_variant",
}

// String returns the reason's metric label value.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons returns every reason label value, for documentation and tests.
func Reasons() []string { return reasonNames[:] }

// Decision is the outcome of Authorize.
type Decision struct {
	Allow  bool
	Reason Reason
	// Scope is the route's required scopes when Reason is
	// ReasonInsufficientScope (the scope= attribute of the challenge);
	// zero for a refusal about binding or a route with no policy.
	Scope grant.ScopeSet
}

// Authorize decides whether who may make the matched request. Binding is
// checked before scopes, so a caller from another workspace learns nothing
// about what the route would need.
func (m *Match) Authorize(who *grant.Principal) Decision {
	r := m.Route
	if r == nil {
		if m.VariantOf != nil {
			return Decision{Reason: ReasonRouteVariant}
		}
		return Decision{Reason: ReasonNoRoute}
	}
	if r.Access == AccessPublic {
		return Decision{Allow: true, Reason: ReasonPublic}
	}
	if !r.Via.Allows(who.Kind) {
		return Decision{Reason: ReasonKindNotAllowed}
	}
	if m.BindsWorkspace {
		if who.Workspace == "" {
			return Decision{Reason: ReasonNoWorkspace}
		}
		if who.Workspace != m.Workspace {
			return Decision{Reason: ReasonWorkspaceMismatch}
		}
	}
	if who.Project != "" {
		if m.BindsProject {
			if who.Project != m.Project {
				return Decision{Reason: ReasonProjectMismatch}
			}
		} else if !r.ProjectTokens {
			return Decision{Reason: ReasonProjectTokenNotAllowed}
		}
	}
	if r.Access == AccessScopes && !who.Scopes.Satisfies(r.Scopes) {
		return Decision{Reason: ReasonInsufficientScope, Scope: r.Scopes}
	}
	return Decision{Allow: true, Reason: ReasonAllowed}
}

// ErrPath is wrapped by ValidatePath errors.
var ErrPath = errors.New("non-canonical request path")

// ValidatePath refuses request paths that a policy decision and the upstream
// could read differently: path is the unescaped path, escaped its escaped
// form as sent (URL.EscapedPath). Refused: not starting with "/", empty or
// dot segments ("//", "/./", "/../"), backslashes, control characters,
// semicolons (path parameters to some servers), encoded "/" or "\"
// (which would split segments differently after decoding), and a
// double-encoded "/", "\", "." or "%" ("%252F", "%255c", "%252E", "%2525":
// the unescaped path holds "%2F"...), which an upstream that decodes twice
// would route elsewhere. Checking the unescaped path catches these whether or
// not the caller has an escaped form (net/url keeps none for "%252F").
func ValidatePath(path, escaped string) error {
	if len(path) == 0 || path[0] != '/' {
		return errPathStart
	}
	// One table lookup per byte: every request passes here, refused or not.
	segStart := 1
	for i := 1; i < len(path); i++ {
		class := pathBytes[path[i]]
		if class == pathOrdinary {
			continue
		}
		switch class {
		case pathSlash:
			if err := checkSegment(path[segStart:i], false); err != nil {
				return err
			}
			segStart = i + 1
		case pathControl:
			return errPathControl
		case pathBackslash:
			return errPathBackslash
		case pathSemicolon:
			return errPathSemicolon
		case pathPercent:
			if i+2 < len(path) && doubleEncoded(path[i+1], path[i+2]) {
				return errPathDoubleEncoded
			}
		}
	}
	if err := checkSegment(path[segStart:], true); err != nil {
		return err
	}
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		switch escaped[i+1 : i+3] {
		case "2F", "2f", "5C", "5c":
			return errPathEncodedSlash
		}
	}
	return nil
}

// checkSegment refuses an empty segment ("//"; a trailing empty one, "/a/",
// is the subtree form and allowed) and the dot segments.
func checkSegment(seg string, last bool) error {
	if len(seg) > 2 {
		return nil
	}
	switch {
	case seg == "" && !last:
		return errPathEmptySegment
	case seg == "." || seg == "..":
		return errPathDotSegment
	}
	return nil
}

// doubleEncoded reports whether "%" then hi, lo in an unescaped path is the
// encoding of "/", "\", "." or "%" (any hex case), left by a second layer of
// encoding.
func doubleEncoded(hi, lo byte) bool {
	switch hi {
	case '2':
		return lo == 'F' || lo == 'f' || lo == 'E' || lo == 'e' || lo == '5'
	case '5':
		return lo == 'C' || lo == 'c'
	}
	return false
}

// The byte classes of ValidatePath.
const (
	pathOrdinary uint8 = iota
	pathSlash
	pathControl
	pathBackslash
	pathSemicolon
	pathPercent
)

var pathBytes = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = pathControl
	}
	t[0x7f] = pathControl
	t['/'] = pathSlash
	t['\\'] = pathBackslash
	t[';'] = pathSemicolon
	t['%'] = pathPercent
	return t
}()

// ValidatePath's errors, made once: refusing a crafted path must not cost an
// allocation per request.
var (
	errPathStart         = fmt.Errorf("%w: must start with /", ErrPath)
	errPathControl       = fmt.Errorf("%w: control character", ErrPath)
	errPathBackslash     = fmt.Errorf("%w: backslash", ErrPath)
	errPathSemicolon     = fmt.Errorf("%w: semicolon", ErrPath)
	errPathEmptySegment  = fmt.Errorf("%w: empty segment", ErrPath)
	errPathDotSegment    = fmt.Errorf("%w: dot segment", ErrPath)
	errPathEncodedSlash  = fmt.Errorf("%w: encoded slash", ErrPath)
	errPathDoubleEncoded = fmt.Errorf("%w: double-encoded character", ErrPath)
)
