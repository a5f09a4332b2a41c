package jsonwire

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
)

// Problem says what ReadObject found wrong.
type Problem uint8

// The problems of ReadObject, in the order it can meet them.
const (
	// NotObject: the input does not start with '{' (Err is set when its
	// first token is not even JSON).
	NotObject Problem = iota
	// Syntax: the input is not valid JSON (Err says where).
	Syntax
	// UnknownName: a member name is not one of the allowed, exactly.
	UnknownName
	// RepeatedName: a member name appears a second time.
	RepeatedName
	// Trailing: something follows the object.
	Trailing
)

// Error is a problem ReadObject found. Name is the member name of
// UnknownName and RepeatedName, as written in the input: a caller that
// echoes it decides whether it may be shown (package redact).
type Error struct {
	Problem Problem
	Name    string
	Err     error // the decoder's error, for NotObject and Syntax
}

func (e *Error) Error() string {
	switch e.Problem {
	case NotObject:
		return "not a JSON object"
	case UnknownName:
		return "unknown member name"
	case RepeatedName:
		return "member name repeated"
	case Trailing:
		return "data after the JSON object"
	}
	return "malformed JSON: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ReadObject reads data as one JSON object, member by member with
// encoding/json's decoder, so that the first problem met is the one
// reported: each member name must be in allowed, spelled exactly (after
// unescaping), at most once, and its value valid JSON; then fn gets the name
// and raw value, and an error of fn stops the reading and is returned as it
// is. Only white space may follow the object. Every other problem is an
// *Error.
func ReadObject(data []byte, allowed []string, fn func(name string, value []byte) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	t, err := dec.Token()
	if err != nil {
		return &Error{Problem: NotObject, Err: err}
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return &Error{Problem: NotObject}
	}
	seen := make([]bool, len(allowed))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return &Error{Problem: Syntax, Err: err}
		}
		name, _ := t.(string)
		i := slices.Index(allowed, name)
		switch {
		case i < 0:
			return &Error{Problem: UnknownName, Name: name}
		case seen[i]:
			return &Error{Problem: RepeatedName, Name: name}
		}
		seen[i] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return &Error{Problem: Syntax, Err: err}
		}
		if fn != nil {
			if err := fn(name, value); err != nil {
				return err
			}
		}
	}
	if t, err := dec.Token(); err != nil {
		return &Error{Problem: Syntax, Err: err}
	} else if t != json.Delim('}') {
		return &Error{Problem: Syntax, Err: io.ErrUnexpectedEOF}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Problem: Trailing}
	}
	return nil
}
