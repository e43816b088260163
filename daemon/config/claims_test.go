package config

import (
	"strings"
	"testing"
)

// oidc.groupsClaim (claim paths, a list) and oidc.userClaims (an order),
// from every layer, with the older scalar forms still accepted.
func TestClaimSettings(t *testing.T) {
	cases := []struct {
		name       string
		file       string // YAML, or TOML when it starts with "["
		args       []string
		environ    []string
		wantGroups []string
		wantUser   []string
	}{
		{
			name:       "defaults",
			wantGroups: []string{"groups"},
			wantUser:   []string{"preferred_username", "email", "sub"},
		},
		{
			name:       "one path as a scalar, as before",
			file:       "oidc:\n  groupsClaim: realm_access.roles\n",
			wantGroups: []string{"realm_access.roles"},
			wantUser:   []string{"preferred_username", "email", "sub"},
		},
		{
			name: "several paths as a YAML list, brackets and keys()",
			file: "oidc:\n  groupsClaim:\n    - realm_access.roles\n    - resource_access[\"my-client\"].roles\n" +
				"    - '[\"urn:zitadel:iam:org:project:roles\"].keys()'\n  userClaims: [upn, email]\n",
			wantGroups: []string{"realm_access.roles", `resource_access["my-client"].roles`, `["urn:zitadel:iam:org:project:roles"].keys()`},
			wantUser:   []string{"upn", "email"},
		},
		{
			name:       "TOML",
			file:       "[oidc]\n  groupsClaim = [\"groups\", \"roles\"]\n  userClaims = [\"email\"]\n",
			wantGroups: []string{"groups", "roles"},
			wantUser:   []string{"email"},
		},
		{
			name:       "flags take commas",
			args:       []string{`--oidc.groupsClaim=realm_access.roles,resource_access["edgepass"].roles`, "--oidc.userClaims=email,sub"},
			wantGroups: []string{"realm_access.roles", `resource_access["edgepass"].roles`},
			wantUser:   []string{"email", "sub"},
		},
		{
			name:       "environment takes commas",
			environ:    []string{`EDGEPASS_OIDC_GROUPSCLAIM=["urn:zitadel:iam:org:project:roles"].keys()`, "EDGEPASS_OIDC_USERCLAIMS=preferred_username"},
			wantGroups: []string{`["urn:zitadel:iam:org:project:roles"].keys()`},
			wantUser:   []string{"preferred_username"},
		},
		{
			name:       "usernameClaim, the older form, keeps meaning that claim, else email, else sub",
			file:       "oidc:\n  usernameClaim: upn\n",
			wantGroups: []string{"groups"},
			wantUser:   []string{"upn", "email", "sub"},
		},
		{
			name:       "usernameClaim: email",
			args:       []string{"--oidc.usernameClaim=email"},
			wantGroups: []string{"groups"},
			wantUser:   []string{"email", "sub"},
		},
		{
			name:       "usernameClaim: preferred_username (the old default, in existing files) is the new default",
			file:       "oidc:\n  groupsClaim: groups\n  usernameClaim: preferred_username\n",
			wantGroups: []string{"groups"},
			wantUser:   []string{"preferred_username", "email", "sub"},
		},
		{
			name:       "usernameClaim agreeing with userClaims",
			args:       []string{"--oidc.usernameClaim=upn", "--oidc.userClaims=upn,email,sub"},
			wantGroups: []string{"groups"},
			wantUser:   []string{"upn", "email", "sub"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string(nil), minimal...)
			if c.file != "" {
				name := "edgepass.yml"
				if strings.HasPrefix(c.file, "[") {
					name = "edgepass.toml"
				}
				args = append(args, "--configFile="+writeFile(t, name, c.file))
			}
			args = append(args, c.args...)
			cfg, err := Load(args, c.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want(t, "oidc.groupsClaim", cfg.OIDC.GroupsClaim, c.wantGroups)
			want(t, "oidc.userClaims", cfg.OIDC.UserClaims, c.wantUser)
		})
	}
}

// A malformed claim path is refused at load, naming the setting, the path,
// where it breaks and the syntax to use.
func TestClaimSettingErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "unquoted bracket",
			args: []string{"--oidc.groupsClaim=resource_access[my-client].roles"},
			want: []string{`config: oidc.groupsClaim: claim path "resource_access[my-client].roles": at character 16: a bracketed key must be quoted: ["my-client"]`,
				`resource_access["my-client"].roles`, `.keys()`},
		},
		{
			name: "empty name",
			args: []string{"--oidc.groupsClaim=realm_access..roles"},
			want: []string{`config: oidc.groupsClaim: claim path "realm_access..roles": at character 14: empty name between two dots`},
		},
		{
			name: "keys() in the middle",
			args: []string{`--oidc.groupsClaim=["urn:zitadel:iam:org:project:roles"].keys().x`},
			want: []string{`at character 39: keys() must end the path`},
		},
		{
			name: "unterminated quote",
			args: []string{`--oidc.groupsClaim=resource_access["edgepass.roles`},
			want: []string{`at character 17: unterminated quoted key; close it with "]`},
		},
		{
			name: "empty path",
			args: []string{"--oidc.groupsClaim=groups,"},
			want: []string{`config: oidc.groupsClaim: claim path "": empty`},
		},
		{
			name: "keys() for a user name",
			args: []string{"--oidc.userClaims=realm_access.keys()"},
			want: []string{`config: oidc.userClaims: "realm_access.keys()": .keys() yields a list`},
		},
		{
			name: "malformed user claim",
			args: []string{"--oidc.userClaims=a b"},
			want: []string{`config: oidc.userClaims: claim path "a b": at character 2: a space`},
		},
		{
			name: "usernameClaim contradicting userClaims",
			args: []string{"--oidc.usernameClaim=upn", "--oidc.userClaims=email,sub"},
			want: []string{`config: oidc.usernameClaim: "upn" and oidc.userClaims ["email" "sub"] are both set; usernameClaim is the older form of userClaims: [upn, email, sub]; keep only userClaims`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(append(append([]string(nil), minimal...), c.args...), nil)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}
