package config

import (
	"strings"
	"testing"
	"time"
)

func TestAdminTokensConsoleAndEventsSettings(t *testing.T) {
	ci := writeFile(t, "ci.token", "ci-token-0123456789abcdef\n")
	ops := writeFile(t, "ops.token", "ops-token-0123456789abcdef\n")
	file := writeFile(t, "edgepass.yml", `
oidc: {issuer: "http://127.0.0.1:9000", clientID: edgepass}
admin:
  listen: 0.0.0.0:8001
  tokenFile: `+writeFile(t, "admin.token", testToken)+`
  tokens:
    - {name: ci, file: `+ci+`, readOnly: true}
    - {name: ops, file: `+ops+`}
  console:
    enabled: true
    groups: [admins]
events:
  maxAge: 720h
  stdout: true
`)
	c, err := Load([]string{"--configFile=" + file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, "tokens", len(c.Admin.Tokens), 2)
	want(t, "ci secret read from its file", c.Admin.Tokens[0].Secret(), "ci-token-0123456789abcdef")
	want(t, "ci read-only", c.Admin.Tokens[0].ReadOnly, true)
	want(t, "ops read-write", c.Admin.Tokens[1].ReadOnly, false)
	want(t, "console url derived from admin.listen (unspecified address = loopback)", c.Admin.Console.URL, "http://127.0.0.1:8001")
	want(t, "console lifetime default", time.Duration(c.Admin.Console.SessionLifetime), 8*time.Hour)
	want(t, "events stream default", c.Events.Stream, "edgepass_events")
	want(t, "events maxAge", time.Duration(c.Events.MaxAge), 720*time.Hour)
	want(t, "events maxBytes default", c.Events.MaxBytes, int64(256<<20))
	want(t, "events stdout", c.Events.Stdout, true)

	// Named tokens alone are enough: admin.token is then not required.
	c, err = Load([]string{"--oidc.issuer=http://127.0.0.1:9000", "--oidc.clientID=edgepass",
		"--admin.tokens[0].name=ci", "--admin.tokens[0].file=" + ci}, nil)
	if err != nil {
		t.Fatalf("named token without admin.token: %v", err)
	}
	want(t, "flag token", c.Admin.Tokens[0].Secret(), "ci-token-0123456789abcdef")
}

func TestAdminConsoleSettingErrors(t *testing.T) {
	short := writeFile(t, "short.token", "short")
	same := writeFile(t, "same.token", testToken)
	ci := writeFile(t, "ci.token", "ci-token-0123456789abcdef")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"token without file", []string{"--admin.tokens[0].name=ci"}, "admin.tokens[0].file: required"},
		{"token name with spaces", []string{"--admin.tokens[0].name=c i", "--admin.tokens[0].file=" + ci}, `admin.tokens[0].name: "c i"`},
		{"token named like admin.token", []string{"--admin.tokens[0].name=admin", "--admin.tokens[0].file=" + ci}, `"admin" is already the name of admin.token`},
		{"two tokens, one name", []string{"--admin.tokens[0].name=ci", "--admin.tokens[0].file=" + ci, "--admin.tokens[1].name=ci", "--admin.tokens[1].file=" + writeFile(t, "x", "another-token-0123456789")}, `"ci" is already the name`},
		{"short token", []string{"--admin.tokens[0].name=ci", "--admin.tokens[0].file=" + short}, "too short"},
		{"token equal to admin.token", []string{"--admin.tokens[0].name=ci", "--admin.tokens[0].file=" + same}, "the same as admin.token"},
		{"console without groups", []string{"--admin.console.enabled=true"}, "admin.console.groups: required"},
		{"console url with a path", []string{"--admin.console.enabled=true", "--admin.console.groups=admins", "--admin.console.url=https://a.example.com/x"}, "must have no path"},
		{"console group filtered out", []string{"--admin.console.enabled=true", "--admin.console.groups=admins", "--oidc.groupsInclude=team-*"}, `"admins" is not kept by oidc.groupsInclude`},
		{"public without enabled", []string{"--admin.console.public=true"}, "admin.console.public: set together"},
		{"console lifetime too long", []string{"--admin.console.enabled=true", "--admin.console.groups=admins", "--admin.console.sessionLifetime=720h"}, "sessionLifetime: must be between"},
		{"events stream name", []string{"--events.stream=a.b"}, `events.stream: "a.b"`},
		{"events maxAge", []string{"--events.maxAge=1m"}, "events.maxAge: must be at least 1h"},
		{"events maxBytes", []string{"--events.maxBytes=10"}, "events.maxBytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(append(append([]string{}, minimal...), c.args...), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
