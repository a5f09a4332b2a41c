package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// The token commands' API mode: instead of editing a key store, they call
// the token API (deplo_auth_tokens) of a running gateway, authenticated
// with $DEPLO_KEY, the variable the deplo CLI uses — so an admin manages
// tokens from a laptop without access to the store.

// apiFlags is the --api flag of a token command.
type apiFlags struct{ url *string }

// addAPIFlags adds --api, and --workspace when the command has none yet.
func addAPIFlags(cmd *cobra.Command) apiFlags {
	if cmd.Flags().Lookup("workspace") == nil {
		cmd.Flags().String("workspace", "", "workspace whose tokens to list or revoke (required with --api; default without: every workspace)")
	}
	return apiFlags{url: cmd.Flags().String("api", "",
		"URL of the deplo API (e.g. https://api.deplo.sh): manage tokens through its token API with $DEPLO_KEY "+
			"(default $DEPLO_API_URL when no key store is named)")}
}

// apiClient calls the token API of one workspace.
type apiClient struct {
	base      string // the API's URL, without a trailing /
	key       string // $DEPLO_KEY: never printed
	workspace string
	http      *http.Client
}

// client returns the API client when the command is in API mode: --api
// given, or $DEPLO_API_URL set while neither a store flag nor a store
// variable names a key store. It returns nil in store mode.
func (a apiFlags) client(cmd *cobra.Command) (*apiClient, error) {
	storeFlagged := cmd.Flags().Changed("keys-file") || cmd.Flags().Changed("postgres")
	raw := *a.url
	switch {
	case raw != "" && storeFlagged:
		return nil, errors.New("give either --api or a key store (--keys-file, --postgres), not both")
	case raw == "" && (storeFlagged || os.Getenv(keysFileEnv) != "" || os.Getenv(postgresEnv) != ""):
		return nil, nil
	case raw == "":
		if raw = os.Getenv("DEPLO_API_URL"); raw == "" {
			return nil, nil
		}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, errors.New("--api / $DEPLO_API_URL: want an http(s) URL such as https://api.deplo.sh, without credentials or query")
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return nil, errors.New("--api / $DEPLO_API_URL: plain http would send $DEPLO_KEY in the clear; use https " +
			"(http is accepted for localhost and loopback addresses only)")
	}
	key := os.Getenv("DEPLO_KEY")
	if key == "" {
		return nil, errors.New("$DEPLO_KEY is not set: export the API token (sk_live_…) or dashboard session the API should authenticate")
	}
	workspace, _ := cmd.Flags().GetString("workspace")
	if workspace == "" {
		return nil, errors.New("--workspace is required with --api")
	}
	return &apiClient{base: strings.TrimSuffix(u.String(), "/"), key: key, workspace: workspace,
		http: &http.Client{Timeout: 30 * time.Second, CheckRedirect: noRedirect}}, nil
}

// noRedirect stops the client at a redirect: following one would send
// $DEPLO_KEY to wherever the server points (another host, port or scheme).
// call reports the redirect instead.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// loopback reports whether host (a URL's Hostname) is this machine:
// localhost or a loopback address, where plain http never leaves it.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// tokenLister is what token list and revoke need: a key store, or the API.
type tokenLister interface {
	ListTokens(ctx context.Context, workspace string) ([]keystore.TokenRecord, error)
	RevokeToken(ctx context.Context, id string, at time.Time) (keystore.TokenRecord, error)
}

// open returns the API client in API mode, else the key store the flags
// name (see storeFlags.open).
func (a apiFlags) open(cmd *cobra.Command, store storeFlags) (tokenLister, string, func(), error) {
	c, err := a.client(cmd)
	switch {
	case err != nil:
		return nil, "", nil, err
	case c == nil:
		admin, where, closeStore, err := store.open(cmd)
		if workspace, _ := cmd.Flags().GetString("workspace"); err == nil && workspace != "" {
			return workspaceStore{admin, workspace}, where, closeStore, nil
		}
		return admin, where, closeStore, err
	case cmd.Flags().Lookup("at") != nil && cmd.Flags().Changed("at"):
		return nil, "", nil, errors.New("--at is not supported with --api: the token API revokes now")
	}
	return c, c.base, func() {}, nil
}

// workspaceStore confines list and revoke in store mode to --workspace, as
// the API confines them to the path's workspace.
type workspaceStore struct {
	keystore.TokenManager
	workspace string
}

func (w workspaceStore) ListTokens(ctx context.Context, _ string) ([]keystore.TokenRecord, error) {
	return w.TokenManager.ListTokens(ctx, w.workspace)
}

func (w workspaceStore) RevokeToken(ctx context.Context, id string, at time.Time) (keystore.TokenRecord, error) {
	rec, err := w.Token(ctx, id)
	if err == nil && rec.Workspace != w.workspace {
		err = keystore.NoTokenError("revoke token", id) // as the API answers: 404
	}
	if err != nil {
		return rec, err
	}
	return w.TokenManager.RevokeToken(ctx, id, at)
}

// create creates a token through the API and prints it once, on stdout.
func (c *apiClient) create(cmd *cobra.Command, name, project string, scopes []string, expiresAt time.Time, allowedIPs []string) error {
	body := map[string]any{"name": name, "scopes": scopes}
	if len(allowedIPs) > 0 {
		body["allowed_ips"] = allowedIPs
	}
	if project != "" {
		body["project"] = project
	}
	if !expiresAt.IsZero() {
		body["expires_at"] = expiresAt.UTC().Format(time.RFC3339)
	}
	var made struct{ ID, Token string }
	if err := c.call(cmd.Context(), http.MethodPost, c.tokensURL(""), body, &made); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "created token %s in workspace %s through %s; it is shown once:\n", printable(made.ID), c.workspace, c.base)
	fmt.Fprintln(cmd.OutOrStdout(), printable(made.Token))
	return nil
}

// ListTokens lists the tokens of the client's workspace (the API serves
// one workspace; the argument is ignored).
func (c *apiClient) ListTokens(ctx context.Context, _ string) ([]keystore.TokenRecord, error) {
	var out struct {
		Tokens []keystore.TokenRecord `json:"tokens"`
	}
	err := c.call(ctx, http.MethodGet, c.tokensURL(""), nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes the token now (the API has no scheduled revocation;
// open refuses --at) and returns it as stored afterwards.
func (c *apiClient) RevokeToken(ctx context.Context, id string, _ time.Time) (keystore.TokenRecord, error) {
	var rec keystore.TokenRecord
	if err := c.call(ctx, http.MethodDelete, c.tokensURL(id), nil, nil); err != nil {
		return rec, err
	}
	err := c.call(ctx, http.MethodGet, c.tokensURL(id), nil, &rec)
	return rec, err
}

func (c *apiClient) tokensURL(id string) string {
	u := c.base + "/v1/workspaces/" + url.PathEscape(c.workspace) + "/tokens"
	if id != "" {
		u += "/" + url.PathEscape(id)
	}
	return u
}

// maxAnswerBytes bounds an API answer (a list of many tokens included).
const maxAnswerBytes = 64 << 20

// call sends one request and decodes a 2xx answer into out (nil: none).
// Every failure is one line: unreachable, refused (with the API's error
// code and description) or an answer that is not the token API's.
func (c *apiClient) call(ctx context.Context, method, target string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		return fmt.Errorf("cannot reach the deplo API at %s: %v", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading the deplo API's answer: %v", err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return fmt.Errorf("the deplo API answered %s %s with %d and Location %q; $DEPLO_KEY is never sent to a redirect: "+
			"give --api the final URL", method, req.URL.Path, resp.StatusCode, oneLine(resp.Header.Get("Location")))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var refusal struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(data, &refusal) == nil && refusal.Error != "" {
			return fmt.Errorf("the deplo API refused %s %s: %d %s: %s", method, req.URL.Path, resp.StatusCode,
				oneLine(refusal.Error), oneLine(refusal.Description))
		}
		return fmt.Errorf("the deplo API answered %s %s with %s", method, req.URL.Path, oneLine(resp.Status))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the answer of %s %s is not the token API's JSON (is --api the gateway's URL?)", method, req.URL.Path)
	}
	return nil
}
