package policy

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

func mustCompile(t *testing.T, r Rules) *Policy {
	t.Helper()
	p, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAdmits(t *testing.T) {
	alice := &token.Claims{Subject: "sub-alice", PreferredUsername: "alice", Email: "Alice@Example.com"}
	cases := []struct {
		name   string
		rules  Rules
		groups []string
		want   bool
	}{
		{"no rules admits everyone", Rules{}, nil, true},
		{"group match", Rules{AllowedGroups: []string{"admins"}}, []string{"dev", "admins"}, true},
		{"group miss", Rules{AllowedGroups: []string{"admins"}}, []string{"dev"}, false},
		{"group is case-sensitive", Rules{AllowedGroups: []string{"Admins"}}, []string{"admins"}, false},
		{"comma list", Rules{AllowedGroups: []string{"ops, admins"}}, []string{"admins"}, true},
		{"user by name", Rules{AllowedUsers: []string{"alice"}}, nil, true},
		{"user by sub", Rules{AllowedUsers: []string{"sub-alice"}}, nil, true},
		{"user by email, any case", Rules{AllowedUsers: []string{"alice@example.COM"}}, nil, true},
		{"other user", Rules{AllowedUsers: []string{"bob"}}, nil, false},
		{"email domain", Rules{AllowedEmailDomains: []string{"@example.com"}}, nil, true},
		{"email domain suffix is not a match", Rules{AllowedEmailDomains: []string{"ample.com"}}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustCompile(t, tc.rules).Admits(alice, tc.groups); got != tc.want {
				t.Fatalf("Admits = %v, want %v", got, tc.want)
			}
		})
	}
}

// Attack: a group name carrying the separator (LDAP DNs contain commas) or
// a control character splits into groups the user is not in, or splits the
// header itself.
func TestIdentityHeadersRefuseGroupSmuggling(t *testing.T) {
	p := mustCompile(t, Rules{UserHeader: "x-auth-user", GroupsHeader: "X-Auth-Groups", NameHeader: "X-Auth-Name"})
	c := &token.Claims{Subject: "s", PreferredUsername: "mallory\r\nX-Auth-User: admin", Name: "  Mal\x00 "}
	names, values := p.Identity(c, []string{"dev", "x,admins", "", "ops\nadmins", "ops"})
	got := map[string]string{}
	for i, n := range names {
		got[n] = values[i]
	}
	if got["X-Auth-Groups"] != "dev,ops" {
		t.Errorf("groups header = %q, want dev,ops", got["X-Auth-Groups"])
	}
	if strings.ContainsAny(got["X-Auth-User"], "\r\n") || got["X-Auth-Name"] != "Mal" {
		t.Errorf("values not sanitized: %q", got)
	}
	if _, ok := got["X-Auth-Email"]; ok {
		t.Error("a header with no value was set")
	}
	semi := mustCompile(t, Rules{GroupsHeader: "X-G", GroupsSeparator: ";"})
	if _, v := semi.Identity(c, []string{"cn=a,dc=x", "b;c", "d"}); len(v) != 1 || v[0] != "cn=a,dc=x;d" {
		t.Errorf("separator ; = %q", v)
	}
}

type fakeState struct {
	sessionRevoked, userRevoked, tooLong bool
	override                             []string
}

// Named parameters: docs/architecture.md, I1.
func (f fakeState) SessionRevoked(_ string, _ time.Time) bool       { return f.sessionRevoked }
func (f fakeState) UserRevoked(_ string, _ int64, _ time.Time) bool { return f.userRevoked }
func (f fakeState) TooLong(_, _ int64) bool                         { return f.tooLong }
func (f fakeState) GroupsOverride(_ string, _ int64) ([]string, bool) {
	return f.override, f.override != nil
}

func TestDecide(t *testing.T) {
	p := mustCompile(t, Rules{AllowedGroups: []string{"ops"}, GroupsHeader: "X-G"})
	c := &token.Claims{Subject: "s", SessionID: "sid", IssuedAt: 1, Expiry: 2, Groups: []string{"ops"}}
	cases := []struct {
		name   string
		st     State
		reason string
		groups string
	}{
		{"no state", nil, "", "ops"},
		{"admitted", fakeState{}, "", "ops"},
		{"session revoked", fakeState{sessionRevoked: true}, SessionRevoked, ""},
		{"user revoked", fakeState{userRevoked: true}, UserRevoked, ""},
		{"too long", fakeState{tooLong: true}, TooLong, ""},
		{"override removes ops", fakeState{override: []string{"dev"}}, NotAllowed, ""},
		{"override grants", fakeState{override: []string{"ops", "x"}}, "", "ops,x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(c, "sk", tc.st, time.Unix(1, 0))
			if d.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", d.Reason, tc.reason)
			}
			if tc.reason == "" && (len(d.Values) != 1 || d.Values[0] != tc.groups) {
				t.Fatalf("groups header %q, want %q", d.Values, tc.groups)
			}
		})
	}
}

func TestCompileRefusesBadRules(t *testing.T) {
	cases := []struct {
		rules Rules
		field string
	}{
		{Rules{UserHeader: "X User"}, "userHeader"},
		{Rules{EmailHeader: "authorization"}, "emailHeader"},
		{Rules{UserHeader: "X-A", NameHeader: "x_a"}, "nameHeader"},
		{Rules{StripHeaders: []string{"host"}}, "stripHeaders"},
		{Rules{StripHeaders: []string{"X:Y"}}, "stripHeaders"},
		{Rules{AllowedEmailDomains: []string{"a@b"}}, "allowedEmailDomains"},
		{Rules{GroupsSeparator: "\x7f"}, "groupsSeparator"},
		{Rules{GroupsSeparator: "\n"}, "groupsSeparator"},
		{Rules{GroupsSeparator: "00"}, "groupsSeparator"},
		{Rules{GroupsSeparator: ", "}, "groupsSeparator"},
		{Rules{GroupsSeparator: "a"}, "groupsSeparator"},
	}
	for _, tc := range cases {
		_, err := Compile(tc.rules)
		// A type assertion, not errors.As: docs/architecture.md, I1.
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != tc.field {
			t.Errorf("%+v: err = %v, want a %s error", tc.rules, err, tc.field)
		}
	}
}

// Attack: spoofed identity headers in every spelling a backend folds into
// the same variable (case, "_" for "-", prefixes) must all be stripped, by
// the plugin (Strips) and by Traefik's ForwardAuth (ForwardAuthRegex).
func TestStripsAndForwardAuthRegexCoverEverySpelling(t *testing.T) {
	p := mustCompile(t, Rules{UserHeader: "X-Auth-User", GroupsHeader: "X-Auth-Groups", StripHeaders: []string{"X-Tenant-*"}})
	re := regexp.MustCompile(p.ForwardAuthRegex())
	spoofed := []string{
		"X-Auth-User", "X_auth_user", "x-AUTH_user", "X-Auth-Groups", "Remote-User", "Remote_User",
		"X-Forwarded-User", "X_Forwarded_Preferred_Username", "X-Auth-Request-User", "X-Auth-Request-Anything",
		"X-Authentik-Username", "X_authentik_groups", "X-Edgepass-Foo", "X-Tenant-Id", "X_tenant_role",
	}
	for _, h := range spoofed {
		if !p.Strips(h) {
			t.Errorf("Strips(%q) = false", h)
		}
		if !re.MatchString(http.CanonicalHeaderKey(h)) {
			t.Errorf("ForwardAuthRegex does not match %q", http.CanonicalHeaderKey(h))
		}
	}
	for _, h := range []string{"Accept", "Authorization", "Cookie", "X-Auth-Userx", "X-Request-Id", "X-Forwarded-For"} {
		if p.Strips(h) || re.MatchString(h) {
			t.Errorf("%q would be stripped", h)
		}
	}
}

func TestIsNavigation(t *testing.T) {
	cases := []struct {
		method string
		h      http.Header
		want   bool
	}{
		{"GET", http.Header{"Accept": {"text/html,application/xhtml+xml"}}, true},
		{"HEAD", http.Header{"Accept": {"TEXT/HTML"}}, true},
		{"GET", http.Header{"Accept": {"application/json"}}, false},
		{"GET", http.Header{}, false},
		{"POST", http.Header{"Accept": {"text/html"}}, false},
		{"GET", http.Header{"Accept": {"text/html"}, "X-Requested-With": {"XMLHttpRequest"}}, false},
	}
	for _, tc := range cases {
		if got := IsNavigation(tc.method, tc.h); got != tc.want {
			t.Errorf("IsNavigation(%s, %v) = %v", tc.method, tc.h, got)
		}
	}
}

func TestChallengeSaysWhy(t *testing.T) {
	if Challenge(NoToken) != `Bearer realm="edgepass"` {
		t.Error(Challenge(NoToken))
	}
	if c := Challenge(Expired); !strings.Contains(c, `error="invalid_token"`) || !strings.Contains(c, `error_description="expired"`) {
		t.Error(c)
	}
	if TokenReason(token.ErrExpired) != Expired || TokenReason(token.ErrSignature) != BadToken {
		t.Error("TokenReason")
	}
}

func FuzzJoinGroupsNeverSmuggles(f *testing.F) {
	f.Add("dev", "x,admins", ",")
	f.Add("a\nb", "c", ";")
	f.Fuzz(func(t *testing.T, a, b, sep string) {
		if _, err := Compile(Rules{GroupsSeparator: sep}); err != nil || sep == "" {
			return // Compile refuses such a separator
		}
		out := JoinGroups([]string{a, b}, sep)
		for _, part := range strings.Split(out, sep) {
			if out != "" && part != a && part != b {
				t.Fatalf("JoinGroups(%q,%q,%q) = %q: %q is not a group", a, b, sep, out, part)
			}
		}
		if hasControl(out) {
			t.Fatalf("control character in %q", out)
		}
	})
}
