package keystore

// Reading a key file: parseFast (one json.Unmarshal and one pass over the
// names) for a good file, parseSlow (entry by entry) to name what is wrong
// with a bad one. Both apply the rules of keycheck.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
	"github.com/deplo-sh/deplo-auth/internal/redact"
)

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

func parseEntry(i int, raw json.RawMessage) (TokenEntry, *Token, error) {
	fail := func(id, field, msg string) (TokenEntry, *Token, error) {
		return TokenEntry{}, nil, &entryError{"token", i, redact.ID(id), field, msg}
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
	var nested struct {
		CreatedBy json.RawMessage `json:"created_by"`
	}
	if json.Unmarshal(raw, &nested) == nil && len(nested.CreatedBy) > 0 && nested.CreatedBy[0] == '{' {
		if err := checkKeys(nested.CreatedBy, creatorFields, false); err != nil {
			return fail(probeID, "created_by", err.Error())
		}
	}
	var r rawEntry
	if err := decodeStrict(raw, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if k, _, ok := strings.Cut(field, "."); ok {
				field = k
			}
			return fail(probeID, field, fmt.Sprintf("got JSON %s, want %s", te.Value, fieldWant(field)))
		}
		return fail(probeID, "", err.Error())
	}
	return entryFromRaw(i, &r)
}

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
	// RevokedReason and AllowedIPs: see TokenEntry.
	RevokedReason string   `json:"revoked_reason"`
	AllowedIPs    []string `json:"allowed_ips"`
	// CreatedBy's names are checked before decoding (exactFileKeys,
	// parseEntry).
	CreatedBy   *Creator `json:"created_by"`
	RotatedFrom string   `json:"rotated_from"`
}

// entryFromRaw applies the key file's rules to decoded entry i.
func entryFromRaw(i int, r *rawEntry) (TokenEntry, *Token, error) {
	fail := func(id, field, msg string) (TokenEntry, *Token, error) {
		return TokenEntry{}, nil, &entryError{"token", i, redact.ID(id), field, msg}
	}
	e := TokenEntry{
		ID:        r.ID,
		Name:      r.Name,
		Hash:      r.Hash,
		Workspace: r.Workspace,
		Project:   r.Project,
		Scopes:    r.Scopes,

		RevokedReason: r.RevokedReason,
		AllowedIPs:    r.AllowedIPs,
		CreatedBy:     r.CreatedBy,
		RotatedFrom:   r.RotatedFrom,
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

// decodeStrict decodes one JSON value, refusing unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkKeys checks that data is one JSON object whose keys are all in
// allowed, spelled exactly, each at most once (package jsonwire reads it).
// whole says data is the whole file, not one entry: the message for a
// value that is not an object then shows the file's form.
func checkKeys(data []byte, allowed []string, whole bool) error {
	err := jsonwire.ReadObject(data, allowed, nil)
	var je *jsonwire.Error
	if !errors.As(err, &je) {
		return err
	}
	switch je.Problem {
	case jsonwire.NotObject:
		if je.Err != nil {
			return syntaxError(je.Err)
		}
		if whole {
			return errors.New(`want a JSON object like {"tokens": [...]}`)
		}
		return errors.New("want a JSON object")
	case jsonwire.UnknownName:
		return fmt.Errorf("unknown field %s", redact.Name(je.Name))
	case jsonwire.RepeatedName:
		return fmt.Errorf("field %s appears more than once", redact.Name(je.Name))
	case jsonwire.Trailing:
		return errors.New("not valid JSON: unexpected data after the document")
	}
	return syntaxError(je.Err)
}

// syntaxError says where data is not valid JSON.
func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("not valid JSON: %v (at byte %d)", se, se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("not valid JSON: unexpected end of input")
	}
	return fmt.Errorf("not valid JSON: %w", err)
}
