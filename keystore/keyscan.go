package keystore

// keyScanner checks the field names of a key file that json.Unmarshal has
// already accepted as valid JSON: encoding/json matches names
// case-insensitively and lets a repeated name override an earlier one, so
// the fast parse needs this one pass over the bytes to keep the file's
// strictness. It answers only "exactly as allowed" or "not sure": anything
// else (an escaped name, an entry that is not an object) sends the file to
// the slow parse, which explains the problem.
type keyScanner struct {
	data []byte
	i    int
}

// exactFileKeys reports whether data, valid JSON, is an object whose names
// are fileFields, each at most once and spelled exactly, whose "tokens" is
// an array of objects named with entryFields and whose "revoked_sessions"
// is null or an array of objects named with sessionFields, likewise.
func exactFileKeys(data []byte) bool {
	s := keyScanner{data: data}
	s.space()
	return s.object(fileFields, func(field int) bool {
		switch fileFields[field] {
		case "tokens":
			return s.arrayOfObjects(entryFields)
		default: // revoked_sessions
			if s.peek() == 'n' {
				return s.skipValue()
			}
			return s.arrayOfObjects(sessionFields)
		}
	})
}

func (s *keyScanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *keyScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads an object whose names are in allowed, each at most once;
// value reads the value of the field with the given index.
func (s *keyScanner) object(allowed []string, value func(field int) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	s.space()
	if s.peek() == '}' {
		s.i++
		return true
	}
	var seen uint32 // allowed has fewer than 32 names
	for {
		name, ok := s.plainString()
		if !ok {
			return false
		}
		field := -1
		for j, a := range allowed {
			if string(name) == a {
				field = j
				break
			}
		}
		if field < 0 || seen&(1<<field) != 0 {
			return false
		}
		seen |= 1 << field
		s.space()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.space()
		if !value(field) {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// arrayOfObjects reads an array whose elements are all objects named with
// allowed (values not looked into, but for a "created_by" object, named
// with creatorFields).
func (s *keyScanner) arrayOfObjects(allowed []string) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	s.space()
	if s.peek() == ']' {
		s.i++
		return true
	}
	value := func(field int) bool {
		if allowed[field] == "created_by" && s.peek() == '{' {
			return s.object(creatorFields, func(int) bool { return s.skipValue() })
		}
		return s.skipValue()
	}
	for {
		if !s.object(allowed, value) {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// plainString reads a string without escapes and returns its bytes; a
// string with an escape reports false (its name could spell an allowed
// one).
func (s *keyScanner) plainString() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.data); j++ {
		switch s.data[j] {
		case '"':
			s.i = j + 1
			return s.data[start:j], true
		case '\\':
			return nil, false
		}
	}
	return nil, false
}

// skipValue moves past one value (the JSON is known to be valid).
func (s *keyScanner) skipValue() bool {
	switch s.peek() {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.data) {
			switch s.data[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // number, true, false, null
		start := s.i
		for s.i < len(s.data) {
			switch s.data[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return s.i > start
	}
}

func (s *keyScanner) skipString() bool {
	for j := s.i + 1; j < len(s.data); j++ {
		switch s.data[j] {
		case '"':
			s.i = j + 1
			return true
		case '\\':
			j++ // the escaped character cannot end the string
		}
	}
	return false
}
