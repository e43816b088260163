package claimpath

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in      string
		segs    []string
		keys    bool
		literal bool
	}{
		{in: "groups", segs: []string{"groups"}, literal: true},
		{in: "realm_access.roles", segs: []string{"realm_access", "roles"}, literal: true},
		{in: `resource_access["my-client"].roles`, segs: []string{"resource_access", "my-client", "roles"}},
		{in: `resource_access['my-client'].roles`, segs: []string{"resource_access", "my-client", "roles"}},
		{in: `resource_access["my.client"]["roles"]`, segs: []string{"resource_access", "my.client", "roles"}},
		{in: `["urn:zitadel:iam:org:project:roles"].keys()`, segs: []string{"urn:zitadel:iam:org:project:roles"}, keys: true},
		{in: `urn:zitadel:iam:org:project:roles.keys()`, segs: []string{"urn:zitadel:iam:org:project:roles"}, keys: true},
		{in: `urn:zitadel:iam:org:project:123:roles`, segs: []string{"urn:zitadel:iam:org:project:123:roles"}, literal: true},
		{in: `["https://example.com/groups"]`, segs: []string{"https://example.com/groups"}},
		{in: "https://example.com/groups", segs: []string{"https://example", "com/groups"}, literal: true},
		{in: `["a\"b\\c"]`, segs: []string{`a"b\c`}},
		{in: `['it"s']`, segs: []string{`it"s`}},
		{in: `["with space"]`, segs: []string{"with space"}},
		{in: "a.keys", segs: []string{"a", "keys"}, literal: true},
		{in: `["keys()"]`, segs: []string{"keys()"}},
		{in: "ü.grüppen", segs: []string{"ü", "grüppen"}, literal: true},
	}
	for _, c := range cases {
		p, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(p.segs, c.segs) || p.keys != c.keys || p.literal != c.literal {
			t.Errorf("Parse(%q) = segs %q keys %v literal %v; want %q %v %v", c.in, p.segs, p.keys, p.literal, c.segs, c.keys, c.literal)
		}
		if p.String() != c.in {
			t.Errorf("String() = %q, want %q", p.String(), c.in)
		}
	}
}

// A malformed path is refused with where and why, so the operator can fix
// the setting from the message alone.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		in     string
		offset int
		msg    string
	}{
		{"", 0, "empty"},
		{".groups", 1, "starts with a dot"},
		{"groups.", 7, "ends with a dot"},
		{"a..b", 3, "empty name between two dots"},
		{"a b", 2, "space"},
		{"resource_access[my-client].roles", 16, `must be quoted: ["my-client"]`},
		{"groups[0]", 7, "array indexes are not supported"},
		{`a["b`, 3, "unterminated quoted key"},
		{`a['b`, 3, "unterminated quoted key"},
		{`a["b"`, 6, "expected ] after the quoted key"},
		{`a["b"]c`, 7, "expected a dot or a bracket"},
		{`a.["b"]`, 2, `a dot before a bracket`},
		{`a[""]`, 2, "empty key"},
		{`a["\x"]`, 3, "not a valid JSON string"},
		{"keys()", 1, "keys() must follow a path to an object"},
		{"a.keys().b", 3, "keys() must end the path"},
		{`a["b"].keys()x`, 8, "keys() must end the path"},
		{"roles(x)", 6, `'(' is not allowed in a bare name`},
		{`a"b`, 2, `'"' is not allowed in a bare name`},
		{"a]", 2, `']' is not allowed`},
		{"a\x00b", 2, "control character"},
		{"a\xffb", 2, "not valid UTF-8"},
	}
	for _, c := range cases {
		_, err := Parse(c.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q): err %v, want a *SyntaxError", c.in, err)
			continue
		}
		if se.Offset != c.offset || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Parse(%q): %v; want offset %d and %q", c.in, err, c.offset, c.msg)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("claim path %q", c.in)) {
			t.Errorf("Parse(%q): error %q does not quote the path", c.in, err)
		}
	}
}

func claims(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLookup(t *testing.T) {
	c := claims(t, `{
		"groups": ["a", "b"],
		"realm_access": {"roles": ["r1", "r2"]},
		"resource_access": {"my-client": {"roles": ["c1"]}, "my.client": {"roles": ["c2"]}},
		"urn:zitadel:iam:org:project:roles": {"viewer": {"1": "org.example"}, "admin": {"1": "org.example"}},
		"https://example.com/groups": ["ns"],
		"https://example": {"com/groups": ["nested"]},
		"realm_access.roles": ["literal wins"],
		"name": "Alice"
	}`)
	cases := []struct {
		path  string
		want  any
		found bool
		err   error
	}{
		{"groups", []any{"a", "b"}, true, nil},
		{`["realm_access"]["roles"]`, []any{"r1", "r2"}, true, nil},
		// Written bare with dots: the literal claim name is tried first
		// (as before claim paths), so this finds the claim literally named so.
		{"realm_access.roles", []any{"literal wins"}, true, nil},
		{`resource_access["my-client"].roles`, []any{"c1"}, true, nil},
		{`resource_access["my.client"].roles`, []any{"c2"}, true, nil},
		{`resource_access["other"].roles`, nil, false, nil},
		{`["urn:zitadel:iam:org:project:roles"].keys()`, []any{"admin", "viewer"}, true, nil},
		{`urn:zitadel:iam:org:project:roles.keys()`, []any{"admin", "viewer"}, true, nil},
		{`["urn:zitadel:iam:org:project:roles"]`, map[string]any{"viewer": map[string]any{"1": "org.example"}, "admin": map[string]any{"1": "org.example"}}, true, nil},
		{"https://example.com/groups", []any{"ns"}, true, nil},
		{`["https://example.com/groups"]`, []any{"ns"}, true, nil},
		{`["https://example"]["com/groups"]`, []any{"nested"}, true, nil},
		{"groups.keys()", nil, true, ErrNotObject},
		{"name.first", nil, false, nil},
		{"missing", nil, false, nil},
		{"missing.keys()", nil, false, nil},
	}
	for _, tc := range cases {
		p := MustParse(tc.path)
		v, found, err := p.Lookup(c)
		if !reflect.DeepEqual(v, tc.want) || found != tc.found || !errors.Is(err, tc.err) {
			t.Errorf("%s: got %#v found=%v err=%v; want %#v found=%v err=%v", tc.path, v, found, err, tc.want, tc.found, tc.err)
		}
	}
}

func TestIsName(t *testing.T) {
	for in, want := range map[string]bool{"email": true, `["email"]`: true, "email.keys()": false, "x.email": false, "emails": false} {
		if got := MustParse(in).IsName("email"); got != want {
			t.Errorf("%s.IsName(email) = %v, want %v", in, got, want)
		}
	}
}
