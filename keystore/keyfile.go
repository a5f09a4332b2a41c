package keystore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxFileSize is the largest key file read or written; a bigger one is
// refused.
const MaxFileSize = 64 << 20

// KeyFile is the on-disk key file document.
type KeyFile struct {
	Tokens []TokenEntry `json:"tokens"`
	// RevokedSessions lists revoked dashboard sessions (see
	// SessionDenylist). It is optional and omitted when empty.
	RevokedSessions []RevokedSession `json:"revoked_sessions,omitempty"`
}

// TokenEntry is one entry of the key file, as written on disk. Project nil
// means workspace-scoped (the field is omitted); ExpiresAt and RevokedAt nil
// mean none (written as null).
type TokenEntry struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Hash      string     `json:"hash"` // "sha256:" + 64 lowercase hex, see FormatHash
	Workspace string     `json:"workspace"`
	Project   *string    `json:"project,omitempty"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// Find returns the entry with the given id, or nil.
func (kf *KeyFile) Find(id string) *TokenEntry {
	for i := range kf.Tokens {
		if kf.Tokens[i].ID == id {
			return &kf.Tokens[i]
		}
	}
	return nil
}

// The JSON field names, exactly as spelled in the file. encoding/json
// matches names case-insensitively and lets a repeated name override an
// earlier one; both are refused before decoding (see checkKeys).
var (
	fileFields  = []string{"tokens", "revoked_sessions"}
	entryFields = []string{"id", "name", "hash", "workspace", "project", "scopes",
		"created_at", "expires_at", "revoked_at"}
)

// rawEntry is what one entry is decoded into: timestamps as strings so a bad
// one is reported with its field name, project as a pointer so "" is told
// apart from absent.
type rawEntry struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Hash      string   `json:"hash"`
	Workspace string   `json:"workspace"`
	Project   *string  `json:"project"`
	Scopes    []string `json:"scopes"`
	CreatedAt *string  `json:"created_at"`
	ExpiresAt *string  `json:"expires_at"`
	RevokedAt *string  `json:"revoked_at"`
}

// fieldWant describes each entry field's expected JSON, for type errors.
var fieldWant = map[string]string{
	"id":         "a string",
	"name":       "a string",
	"hash":       "a string",
	"workspace":  "a string",
	"project":    "a string or null",
	"scopes":     "an array of strings",
	"created_at": "an RFC 3339 time string",
	"expires_at": "an RFC 3339 time string or null",
	"revoked_at": "an RFC 3339 time string or null",
}

// entryError is a problem with one entry of a list (kind "token" or
// "revoked session"). Its message names the entry's index (0-based, as in
// .tokens[i]), its id when it has a printable one, and the field; it never
// includes a hash value.
type entryError struct {
	kind  string
	index int
	id    string
	field string
	msg   string
}

func (e *entryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", e.kind, e.index)
	if e.id != "" {
		fmt.Fprintf(&b, " (id %q)", e.id)
	}
	if e.field != "" {
		b.WriteString(": ")
		b.WriteString(e.field)
	}
	b.WriteString(": ")
	b.WriteString(e.msg)
	return b.String()
}

// LooksSecret reports whether s looks like a raw API token or a stored hash,
// which must never appear as an id (ids are echoed in messages and logs).
func LooksSecret(s string) bool {
	return strings.HasPrefix(s, "sk_") || strings.HasPrefix(s, hashPrefix)
}

// PrintableID returns id for use in messages, or "" when it must not be
// echoed.
func PrintableID(id string) string {
	if LooksSecret(id) || len(id) > 200 {
		return ""
	}
	return id
}

// parseKeyFile parses and validates a key file's contents. name is used in
// error messages. It returns the document and the tokens by hash.
func parseKeyFile(name string, data []byte) (*KeyFile, map[Hash]*Token, error) {
	kf, tokens, err := parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("keys file %s: %w", name, err)
	}
	return kf, tokens, nil
}

func parse(data []byte) (*KeyFile, map[Hash]*Token, error) {
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	if kf, tokens, err, ok := parseFast(data); ok {
		return kf, tokens, err
	}
	return parseSlow(data)
}

// parseFast decodes the whole file with one json.Unmarshal and checks its
// field names with one pass over the bytes (exactFileKeys). ok is false
// when either fails: then parseSlow, which finds the problem and names its
// entry and field, decides. Otherwise every entry decoded and is named
// exactly, and the same rules run in the same order as in parseSlow, so the
// answer (document or first error) is parseSlow's.
func parseFast(data []byte) (kf *KeyFile, tokens map[Hash]*Token, err error, ok bool) {
	var doc struct {
		Tokens          *[]rawEntry  `json:"tokens"`
		RevokedSessions []rawSession `json:"revoked_sessions"`
	}
	if json.Unmarshal(data, &doc) != nil || !exactFileKeys(data) {
		return nil, nil, nil, false
	}
	if doc.Tokens == nil {
		return nil, nil, errTokensMissing, true
	}
	raws := *doc.Tokens
	kf = &KeyFile{Tokens: make([]TokenEntry, 0, len(raws))}
	index := newTokenIndex(len(raws))
	for i := range raws {
		e, tok, err := entryFromRaw(i, &raws[i])
		if err == nil {
			err = index.add(i, tok)
		}
		if err != nil {
			return nil, nil, err, true
		}
		kf.Tokens = append(kf.Tokens, e)
	}
	ids := make(map[string]int, len(doc.RevokedSessions))
	for i := range doc.RevokedSessions {
		rs, err := sessionFromRaw(i, &doc.RevokedSessions[i], ids)
		if err != nil {
			return nil, nil, err, true
		}
		kf.RevokedSessions = append(kf.RevokedSessions, rs)
	}
	return kf, index.tokens, nil, true
}

var errTokensMissing = errors.New(`tokens: missing or null; want an array (it may be empty)`)

// parseSlow parses data entry by entry, so that whatever is wrong is
// reported with its entry and field.
func parseSlow(data []byte) (*KeyFile, map[Hash]*Token, error) {
	if err := checkKeys(data, fileFields, true); err != nil {
		return nil, nil, err
	}
	var doc struct {
		Tokens          *[]json.RawMessage `json:"tokens"`
		RevokedSessions []json.RawMessage  `json:"revoked_sessions"` // optional; null = none
	}
	if err := decodeStrict(data, &doc); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "revoked_sessions" {
				return nil, nil, errors.New("revoked_sessions: want an array of revoked session objects")
			}
			return nil, nil, errors.New("tokens: want an array of token objects")
		}
		return nil, nil, err
	}
	if doc.Tokens == nil {
		return nil, nil, errTokensMissing
	}
	raws := *doc.Tokens
	kf := &KeyFile{Tokens: make([]TokenEntry, 0, len(raws))}
	index := newTokenIndex(len(raws))
	for i, raw := range raws {
		e, tok, err := parseEntry(i, raw)
		if err == nil {
			err = index.add(i, tok)
		}
		if err != nil {
			return nil, nil, err
		}
		kf.Tokens = append(kf.Tokens, e)
	}
	sessions, err := parseRevokedSessions(doc.RevokedSessions)
	if err != nil {
		return nil, nil, err
	}
	kf.RevokedSessions = sessions
	return kf, index.tokens, nil
}

// tokenIndex collects a file's tokens by hash, refusing a second entry with
// the same id or hash.
type tokenIndex struct {
	ids    map[string]int
	hashes map[Hash]int
	tokens map[Hash]*Token
}

func newTokenIndex(n int) *tokenIndex {
	return &tokenIndex{ids: make(map[string]int, n), hashes: make(map[Hash]int, n), tokens: make(map[Hash]*Token, n)}
}

// add adds tok, token i of the file.
func (x *tokenIndex) add(i int, tok *Token) error {
	if j, dup := x.ids[tok.ID]; dup {
		return &entryError{"token", i, PrintableID(tok.ID), "id", fmt.Sprintf("duplicate of token %d", j)}
	}
	x.ids[tok.ID] = i
	if j, dup := x.hashes[tok.Hash]; dup {
		return &entryError{"token", i, PrintableID(tok.ID), "hash", fmt.Sprintf("same hash as token %d", j)}
	}
	x.hashes[tok.Hash] = i
	x.tokens[tok.Hash] = tok
	return nil
}

func parseEntry(i int, raw json.RawMessage) (TokenEntry, *Token, error) {
	fail := func(id, field, msg string) (TokenEntry, *Token, error) {
		return TokenEntry{}, nil, &entryError{"token", i, PrintableID(id), field, msg}
	}
	// Best effort id for messages about an entry that does not decode.
	var probe struct {
		ID any `json:"id"`
	}
	_ = json.Unmarshal(raw, &probe)
	probeID, _ := probe.ID.(string)

	if err := checkKeys(raw, entryFields, false); err != nil {
		return fail(probeID, "", err.Error())
	}
	var r rawEntry
	if err := decodeStrict(raw, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if k, _, ok := strings.Cut(field, "."); ok {
				field = k
			}
			want := fieldWant[field]
			if want == "" {
				want = "another JSON type"
			}
			return fail(probeID, field, fmt.Sprintf("got JSON %s, want %s", te.Value, want))
		}
		return fail(probeID, "", err.Error())
	}
	return entryFromRaw(i, &r)
}

// entryFromRaw applies the key file's rules to decoded entry i.
func entryFromRaw(i int, r *rawEntry) (TokenEntry, *Token, error) {
	fail := func(id, field, msg string) (TokenEntry, *Token, error) {
		return TokenEntry{}, nil, &entryError{"token", i, PrintableID(id), field, msg}
	}
	e := TokenEntry{
		ID:        r.ID,
		Name:      r.Name,
		Hash:      r.Hash,
		Workspace: r.Workspace,
		Project:   r.Project,
		Scopes:    r.Scopes,
	}
	h, err := checkEntryFields(i, &e)
	if err != nil {
		return TokenEntry{}, nil, err
	}
	created, err := parseTime(r.CreatedAt, true)
	if err != nil {
		return fail(r.ID, "created_at", err.Error())
	}
	expires, err := parseTime(r.ExpiresAt, false)
	if err != nil {
		return fail(r.ID, "expires_at", err.Error())
	}
	revoked, err := parseTime(r.RevokedAt, false)
	if err != nil {
		return fail(r.ID, "revoked_at", err.Error())
	}
	e.CreatedAt = created
	if r.ExpiresAt != nil {
		e.ExpiresAt = &expires
	}
	if r.RevokedAt != nil {
		e.RevokedAt = &revoked
	}
	return e, tokenOf(&e, h), nil
}

// checkEntryFields applies the rules on entry i's fields other than its
// times, and returns its parsed hash.
func checkEntryFields(i int, e *TokenEntry) (Hash, error) {
	fail := func(id, field, msg string) (Hash, error) {
		return Hash{}, &entryError{"token", i, PrintableID(id), field, msg}
	}
	switch {
	case e.ID == "":
		return fail("", "id", "missing or empty")
	case LooksSecret(e.ID):
		return fail("", "id", `looks like an API token or its hash; use an identifier such as "tok_…"`)
	}
	h, err := ParseHash(e.Hash)
	if err != nil {
		if e.Hash == "" {
			return fail(e.ID, "hash", "missing or empty; "+errHashForm)
		}
		return fail(e.ID, "hash", errHashForm)
	}
	if e.Workspace == "" {
		return fail(e.ID, "workspace", "missing or empty")
	}
	if e.Project != nil && *e.Project == "" {
		return fail(e.ID, "project", "empty; omit it or use null for a workspace-scoped token")
	}
	for k, s := range e.Scopes {
		if s == "" {
			return fail(e.ID, fmt.Sprintf("scopes[%d]", k), "want a non-empty string")
		}
	}
	return h, nil
}

// checkEntry applies the key file's rules to entry i of a document built in
// memory: the rules parse applies to the same entry once written.
func checkEntry(i int, e *TokenEntry) (*Token, error) {
	h, err := checkEntryFields(i, e)
	if err != nil {
		return nil, err
	}
	for _, t := range []struct {
		field string
		at    *time.Time
	}{{"created_at", &e.CreatedAt}, {"expires_at", e.ExpiresAt}, {"revoked_at", e.RevokedAt}} {
		if t.at != nil && t.at.IsZero() {
			return nil, &entryError{"token", i, PrintableID(e.ID), t.field, errZeroTime.Error()}
		}
	}
	return tokenOf(e, h), nil
}

// tokenOf returns the Token of a valid entry whose hash is h.
func tokenOf(e *TokenEntry, h Hash) *Token {
	tok := &Token{
		ID:        e.ID,
		Name:      e.Name,
		Workspace: e.Workspace,
		Hash:      h,
		Scopes:    slices.Clone(e.Scopes),
		CreatedAt: e.CreatedAt,
	}
	if e.Project != nil {
		tok.Project = *e.Project
	}
	if e.ExpiresAt != nil {
		tok.ExpiresAt = *e.ExpiresAt
	}
	if e.RevokedAt != nil {
		tok.RevokedAt = *e.RevokedAt
	}
	return tok
}

// parseTime parses an RFC 3339 timestamp. A nil s (absent or null) is
// allowed unless required. The zero time is refused: in a Token it means
// "none", so "revoked_at": "0001-01-01T00:00:00Z" would silently un-revoke.
func parseTime(s *string, required bool) (time.Time, error) {
	if s == nil {
		if required {
			return time.Time{}, errors.New("missing or null; want an RFC 3339 time")
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		// The value is not echoed: it could be anything pasted there.
		return time.Time{}, errors.New("not an RFC 3339 time (like 2026-11-26T10:00:00Z)")
	}
	if t.IsZero() {
		return time.Time{}, errZeroTime
	}
	return t, nil
}

var errZeroTime = errors.New("the zero time (0001-01-01T00:00:00Z) is not allowed")

// quoteName quotes a field name from the file for a message, unless it is
// too long or looks like a secret to echo.
func quoteName(k string) string {
	if len(k) > 40 || LooksSecret(k) {
		return "(not shown)"
	}
	return fmt.Sprintf("%q", k)
}

// decodeStrict decodes one JSON value, refusing unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkKeys checks that data is one JSON object whose keys are all in
// allowed, spelled exactly, each at most once. With whole it also reports
// malformed JSON and anything after the object.
func checkKeys(data []byte, allowed []string, whole bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("not valid JSON: unexpected end of input")
		}
		return fmt.Errorf("not valid JSON: %w", err)
	}
	t, err := dec.Token()
	if err != nil {
		return syntax(err)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		if whole {
			return errors.New(`want a JSON object like {"tokens": [...]}`)
		}
		return errors.New("want a JSON object")
	}
	seen := make(map[string]bool, len(allowed))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return syntax(err)
		}
		k, _ := t.(string)
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("unknown field %s", quoteName(k))
		}
		if seen[k] {
			return fmt.Errorf("field %s appears more than once", quoteName(k))
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return syntax(err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return syntax(err)
	}
	if whole {
		if _, err := dec.Token(); err != io.EOF {
			return errors.New("not valid JSON: unexpected data after the document")
		}
	}
	return nil
}

// ReadKeyFile reads, parses and validates the key file at path with the
// rules OpenFile applies. A missing file returns an empty KeyFile and an
// error satisfying errors.Is(err, fs.ErrNotExist).
func ReadKeyFile(path string) (*KeyFile, error) {
	data, _, _, err := readFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &KeyFile{}, err
		}
		return nil, err
	}
	kf, _, err := parseKeyFile(path, data)
	if err != nil {
		return nil, err
	}
	return kf, nil
}

// readFile reads the key file at path, refusing anything but a regular file
// of at most MaxFileSize bytes. It returns the contents, the file's status
// as of just before reading, and the time reading started.
func readFile(path string) (data []byte, info os.FileInfo, readAt time.Time, err error) {
	fail := func(err error) ([]byte, os.FileInfo, time.Time, error) {
		return nil, nil, time.Time{}, fileError(path, err)
	}
	readAt = time.Now()
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	info, err = f.Stat()
	if err != nil {
		return fail(err)
	}
	if !info.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	if info.Size() > MaxFileSize {
		return fail(fmt.Errorf("larger than %d bytes", MaxFileSize))
	}
	data, err = io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(err)
	}
	if len(data) > MaxFileSize {
		return fail(fmt.Errorf("larger than %d bytes", MaxFileSize))
	}
	return data, info, readAt, nil
}

// fileError reports err about the key file at path, without repeating the
// path an *fs.PathError already names.
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("keys file %s: %w", path, err)
}

// UpdateKeyFile edits the key file at path: it takes an exclusive lock on
// "<path>.lock" (flock, on unix; elsewhere there is no lock), reads the file
// (a missing file is an empty document when create is true, an error
// otherwise), calls fn to modify the document, validates the result with the
// rules ReadKeyFile applies, and replaces the file atomically: a temporary
// file in the same directory, written, fsynced and renamed over the
// original, then the directory fsynced. The file is written with mode 0600
// whatever its old mode (it lists every token's hash, and a group- or
// world-readable copy left by an editor or a checkout is not kept); an
// existing file keeps, where permitted, its owner and group. If
// path is a symbolic link, the file it points to is replaced. If fn or
// validation fails, nothing is written. The lock file is left in place.
func UpdateKeyFile(path string, create bool, fn func(*KeyFile) error) error {
	return updateKeyFile(path, create, fn, nil)
}

// updateKeyFile is UpdateKeyFile. With a store, a file whose bytes are the
// ones the store last loaded is not parsed again (the store's document is
// copied), and what is written is handed to the store, in force at once.
// fn may then get a copy sharing the store's entries' pointers and scopes:
// it must replace them, never write through them.
func updateKeyFile(path string, create bool, fn func(*KeyFile) error, store *FileStore) error {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("keys file %s: locking: %w", path, err)
	}
	defer unlock()

	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved
	}
	var kf *KeyFile
	data, old, _, err := readFile(target)
	switch {
	case err == nil:
		if kf, err = store.editable(target, data); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist) && create:
		kf = &KeyFile{}
	default:
		return err
	}
	if err := fn(kf); err != nil {
		return err
	}
	// The document is checked as it stands in memory, by the rules the
	// written file will be parsed with: no JSON is parsed again, and the
	// tokens found are what the store gets.
	tokens, err := checkKeyFile(kf)
	if err != nil {
		return fmt.Errorf("refusing to write an invalid key file: keys file %s: %w", path, err)
	}
	data, err = marshalKeyFile(kf)
	if err != nil {
		return fmt.Errorf("keys file %s: encoding: %w", path, err)
	}
	if !keyFileUTF8(kf) {
		// Encoding replaced invalid UTF-8: the file says something else
		// than kf, so the store gets what the file says.
		if kf, tokens, err = parseKeyFile(path, data); err != nil {
			return fmt.Errorf("refusing to write an invalid key file: %w", err)
		}
	}
	writtenAt := time.Now()
	info, err := writeAtomic(target, data, 0o600, old)
	if err != nil {
		return fmt.Errorf("keys file %s: writing: %w", path, err)
	}
	store.adopt(kf, tokens, fileState{info: info, sum: sha256.Sum256(data), readAt: writtenAt})
	return nil
}

// checkKeyFile applies the key file's rules to a document built in memory
// and returns its tokens by hash.
func checkKeyFile(kf *KeyFile) (map[Hash]*Token, error) {
	index := newTokenIndex(len(kf.Tokens))
	for i := range kf.Tokens {
		tok, err := checkEntry(i, &kf.Tokens[i])
		if err == nil {
			err = index.add(i, tok)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := checkSessions(kf.RevokedSessions); err != nil {
		return nil, err
	}
	return index.tokens, nil
}

// keyFileUTF8 reports whether every string of kf is valid UTF-8, as JSON
// encoding keeps it.
func keyFileUTF8(kf *KeyFile) bool {
	for i := range kf.Tokens {
		e := &kf.Tokens[i]
		if !utf8.ValidString(e.ID) || !utf8.ValidString(e.Name) || !utf8.ValidString(e.Hash) ||
			!utf8.ValidString(e.Workspace) || (e.Project != nil && !utf8.ValidString(*e.Project)) {
			return false
		}
		for _, s := range e.Scopes {
			if !utf8.ValidString(s) {
				return false
			}
		}
	}
	for _, rs := range kf.RevokedSessions {
		if !utf8.ValidString(rs.ID) {
			return false
		}
	}
	return true
}

// writeAtomic replaces path with data through a temporary file in the same
// directory, and returns the status of the file written. old, if not nil,
// is the file being replaced, whose owner is kept where permitted.
func writeAtomic(path string, data []byte, mode fs.FileMode, old os.FileInfo) (info os.FileInfo, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return nil, err
	}
	if err = f.Chmod(mode); err != nil {
		return nil, err
	}
	if old != nil {
		keepOwner(f, old)
	}
	if err = f.Sync(); err != nil {
		return nil, err
	}
	if info, err = f.Stat(); err != nil {
		return nil, err
	}
	if err = f.Close(); err != nil {
		return nil, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return info, syncDir(dir)
}

// NewTokenID returns a new token id: "tok_" and 10 random lowercase base-36
// characters from crypto/rand.
func NewTokenID() (string, error) {
	const (
		alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
		n        = 10
		// Bytes at or above the largest multiple of 36 are discarded so
		// every character is equally likely.
		limit = 256 - 256%len(alphabet)
	)
	id := make([]byte, 0, len("tok_")+n)
	id = append(id, "tok_"...)
	var buf [16]byte
	for len(id) < cap(id) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, c := range buf {
			if int(c) < limit && len(id) < cap(id) {
				id = append(id, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(id), nil
}
