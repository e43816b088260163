// Package claimpath is the syntax of oidc.groupsClaim and oidc.userClaims:
// a path into the JSON claims of an ID token or userinfo answer.
//
//	groups                                      the claim "groups"
//	realm_access.roles                          "roles" inside the object "realm_access"
//	resource_access["my-client"].roles          a key with punctuation, in brackets and quotes
//	resource_access['my-client'].roles          the same, single quotes (no escapes inside)
//	["https://example.com/groups"]              a claim whose name has dots
//	urn:zitadel:iam:org:project:roles.keys()    the keys of an object, as a list
//	["urn:zitadel:iam:org:project:roles"].keys() the same, bracketed
//
// A name is written bare when it has none of . [ ] ( ) " ' and no space;
// anything else goes in brackets as a quoted string (double quotes take
// JSON escapes, \" and \\). .keys() may only end a path: it turns the
// object there into the list of its keys, sorted. There are no array
// indexes: a path ends at a list (groups) or a string.
//
// For compatibility with releases where a groups claim was looked up by its
// literal name first, a path written only with bare names and dots
// ("https://example.com/groups") is first tried as one claim name.
package claimpath

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/edgepass/edgepass/plugin/idptoken"
)

// Syntax summarizes the path syntax for error messages and help.
const Syntax = `names separated by dots (realm_access.roles); a key with dots, colons or other punctuation in brackets and quotes (resource_access["my-client"].roles, ["https://example.com/groups"]); .keys() at the end for an object's keys (["urn:zitadel:iam:org:project:roles"].keys())`

// Path is a parsed claim path.
type Path struct {
	raw  string
	segs []string
	// keys: the path ends in .keys().
	keys bool
	// literal: written with bare names and dots only, so the whole text is
	// tried as one claim name first.
	literal bool
}

// SyntaxError is a malformed path; Offset counts characters from 1.
type SyntaxError struct {
	Path   string
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	if e.Offset == 0 {
		return fmt.Sprintf("claim path %q: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("claim path %q: at character %d: %s", e.Path, e.Offset, e.Msg)
}

// MustParse is Parse for constant paths; it panics on a malformed one.
func MustParse(s string) Path {
	p, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Parse reads a claim path; the error says where it is malformed and how to
// write it.
func Parse(s string) (Path, error) {
	p := Path{raw: s}
	fail := func(byteOff int, format string, args ...any) (Path, error) {
		off := 0
		if byteOff >= 0 {
			off = utf8.RuneCountInString(s[:min(byteOff, len(s))]) + 1
		}
		return Path{}, &SyntaxError{Path: s, Offset: off, Msg: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return fail(-1, "empty; give a claim name such as groups")
	}
	bare := true
	i := 0
	for {
		// One segment at i: a bracketed key or a bare name.
		if i < len(s) && s[i] == '[' {
			key, next, err := bracket(s, i)
			if err != nil {
				return Path{}, err
			}
			p.segs = append(p.segs, key)
			bare = false
			i = next
		} else {
			start := i
			if s[start:] == "keys()" && start > 0 {
				// After a dot: the keys() suffix.
				p.keys, bare = true, false
				break
			}
			for i < len(s) {
				r, size := utf8.DecodeRuneInString(s[i:])
				if r == '.' || r == '[' {
					break
				}
				if r == utf8.RuneError && size == 1 {
					return fail(i, "not valid UTF-8")
				}
				if unicode.IsSpace(r) || unicode.IsControl(r) {
					return fail(i, "a space or control character outside quotes; put such a key in brackets: [\"…\"]")
				}
				if strings.ContainsRune(`]()"'`, r) {
					if strings.HasPrefix(s[start:], "keys()") {
						if start == 0 {
							return fail(start, "keys() must follow a path to an object, e.g. realm_access.keys() or [\"urn:zitadel:iam:org:project:roles\"].keys()")
						}
						return fail(start, "keys() must end the path")
					}
					return fail(i, "%q is not allowed in a bare name; put a key containing it in brackets and quotes: [\"…\"]", r)
				}
				i += size
			}
			name := s[start:i]
			if name == "" {
				switch {
				case start == 0:
					return fail(start, "starts with a dot; begin with a claim name")
				default:
					return fail(start, "empty name between two dots")
				}
			}
			p.segs = append(p.segs, name)
		}
		if i == len(s) {
			break
		}
		switch s[i] {
		case '.':
			i++
			if i == len(s) {
				return fail(i-1, "ends with a dot; remove it, or finish the path with a name")
			}
			if s[i] == '[' {
				return fail(i-1, "a dot before a bracket; write a[\"b\"], not a.[\"b\"]")
			}
		case '[':
			// next segment is bracketed
		default:
			return fail(i, "expected a dot or a bracket after a key, found %q", s[i:i+1])
		}
	}
	p.literal = bare // one bare name too: trying it whole is the walk itself
	return p, nil
}

// bracket reads ["key"] or ['key'] starting at s[i] == '['.
func bracket(s string, i int) (key string, next int, err error) {
	fail := func(off int, format string, args ...any) (string, int, error) {
		return "", 0, &SyntaxError{Path: s, Offset: utf8.RuneCountInString(s[:min(off, len(s))]) + 1, Msg: fmt.Sprintf(format, args...)}
	}
	if i+1 >= len(s) || (s[i+1] != '"' && s[i+1] != '\'') {
		if i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			return fail(i, "array indexes are not supported; a path ends at a list of groups or a string")
		}
		return fail(i, "a bracketed key must be quoted: [\"my-client\"] or ['my-client']")
	}
	q := s[i+1]
	j := i + 2
	for ; j < len(s); j++ {
		if s[j] == q {
			break
		}
		if q == '"' && s[j] == '\\' {
			j++
		}
	}
	if j >= len(s) {
		return fail(i+1, "unterminated quoted key; close it with %c]", q)
	}
	if q == '"' {
		if err := json.Unmarshal([]byte(s[i+1:j+1]), &key); err != nil {
			return fail(i+1, "the quoted key is not a valid JSON string (escape \" and \\ with a backslash)")
		}
	} else {
		key = s[i+2 : j]
	}
	if key == "" {
		return fail(i, "empty key in brackets")
	}
	if j+1 >= len(s) || s[j+1] != ']' {
		return fail(j+1, "expected ] after the quoted key")
	}
	return key, j + 2, nil
}

// String returns the path as written.
func (p Path) String() string { return p.raw }

// Keys reports whether the path ends in .keys().
func (p Path) Keys() bool { return p.keys }

// IsName reports whether the path is exactly the top-level claim name.
func (p Path) IsName(name string) bool {
	return !p.keys && len(p.segs) == 1 && p.segs[0] == name
}

// Segments returns the keys the path walks (without the keys() suffix).
func (p Path) Segments() []string { return slices.Clone(p.segs) }

// Compiled is the path in the form the edge reads from the IdP-keys fact
// (idptoken.ClaimPath), so the edge walks it without a parser.
func (p Path) Compiled() idptoken.ClaimPath {
	return idptoken.ClaimPath{Raw: p.raw, Segs: p.segs, Keys: p.keys, Literal: p.literal}
}

// Value returns what is at the path in claims (before any keys()): a
// written-bare dotted path is first tried as one claim name. It is the
// edge's walk, so a login and a bearer token map the same claims alike.
func (p Path) Value(claims map[string]any) (any, bool) {
	return p.Compiled().Value(claims)
}

// ErrNotObject means a keys() path found something other than an object.
var ErrNotObject = errors.New("not a JSON object")

// Lookup returns what the path selects: the value, or with keys() the
// object's keys in sorted order ([]any of strings). found is false when the
// path is absent; err is ErrNotObject when keys() met a non-object.
func (p Path) Lookup(claims map[string]any) (v any, found bool, err error) {
	v, found = p.Value(claims)
	if !found || !p.keys {
		return v, found, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, true, ErrNotObject
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out, true, nil
}
