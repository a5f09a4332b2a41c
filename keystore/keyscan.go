package keystore

import "github.com/deplo-sh/deplo-auth/internal/jsonwire"

// exactFileKeys reports whether data, valid JSON that json.Unmarshal has
// already accepted, is an object whose names are fileFields, each at most
// once and spelled exactly, whose "tokens" is an array of objects named
// with entryFields and whose "revoked_sessions" is null or an array of
// objects named with sessionFields, likewise. encoding/json matches names
// case-insensitively and lets a repeated name override an earlier one, so
// the fast parse needs this one pass over the bytes to keep the file's
// strictness. false sends the file to the slow parse, which explains the
// problem.
func exactFileKeys(data []byte) bool {
	return exactNames(data, fileFields, func(field string, value []byte) bool {
		switch field {
		case "tokens":
			return objectsNamed(value, entryFields)
		default: // revoked_sessions
			return string(value) == "null" || objectsNamed(value, sessionFields)
		}
	})
}

// objectsNamed reports whether value is an array of objects whose names
// are in allowed, each at most once (values not looked into, but for a
// "created_by" object, named with creatorFields).
func objectsNamed(value []byte, allowed []string) bool {
	return jsonwire.Elements(value, func(element []byte) bool {
		return exactNames(element, allowed, creatorNamed)
	})
}

// creatorNamed checks the value of field: a created_by object must be
// named with creatorFields.
func creatorNamed(field string, raw []byte) bool {
	if field == "created_by" && len(raw) > 0 && raw[0] == '{' {
		return exactNames(raw, creatorFields, nil)
	}
	return true
}

// exactNames reports whether object is an object whose names are in
// allowed (fewer than 32), each at most once; value, when not nil, checks
// each member's value.
func exactNames(object []byte, allowed []string, value func(field string, raw []byte) bool) bool {
	var seen uint32
	return jsonwire.Members(object, func(name string, raw []byte) bool {
		for i, a := range allowed {
			if name == a {
				if seen&(1<<i) != 0 {
					return false
				}
				seen |= 1 << i
				return value == nil || value(a, raw)
			}
		}
		return false
	})
}
