package grant

// Principal is a verified credential.
type Principal struct {
	Kind Kind
	// Subject is the token id (API key) or the sub claim (JWT).
	Subject string
	// Workspace is empty for a credential bound to no workspace.
	Workspace string
	// Project is empty for a workspace-scoped credential.
	Project string
	Scopes  ScopeSet
}
