package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	ptypes "github.com/traefik/paerser/types"
)

const testToken = "0123456789abcdef0123456789abcdef"

// minimal are the flags every valid configuration needs beyond the defaults.
var minimal = []string{"--oidc.issuer=http://127.0.0.1:9000", "--oidc.clientID=edgepass", "--admin.token=" + testToken}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load(minimal, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"publicURL", c.PublicURL, "http://127.0.0.1:8000"},
		{"listen", c.Listen, "127.0.0.1:8000"},
		{"scopes", c.OIDC.Scopes, []string{"openid", "profile", "email", "groups", "offline_access"}},
		{"groupsClaim", c.OIDC.GroupsClaim, []string{"groups"}},
		{"userClaims", c.OIDC.UserClaims, []string{"preferred_username", "email", "sub"}},
		{"usernameClaim (older form of userClaims)", c.OIDC.UsernameClaim, ""},
		{"lifetime", time.Duration(c.Session.Lifetime), 12 * time.Hour},
		{"cookieName", c.Session.CookieName, "edgepass_session"},
		{"cookieSecure", c.Session.CookieSecure, true},
		{"allowedDomains derived from publicURL", c.Session.AllowedDomains, []string{"127.0.0.1"}},
		{"defaultRedirect derived from publicURL", c.Session.DefaultRedirect, "http://127.0.0.1:8000/"},
		{"refreshInterval", time.Duration(c.Session.RefreshInterval), 5 * time.Minute},
		{"rotationInterval", time.Duration(c.Keys.RotationInterval), time.Duration(0)},
		{"embedded", c.NATS.Embedded.Enabled, true},
		{"embedded.listen", c.NATS.Embedded.Listen, "127.0.0.1:4222"},
		{"dataDir", c.NATS.Embedded.DataDir, "data/nats"},
		{"edgeBucket", c.NATS.EdgeBucket, "edgepass_edge"},
		{"sessionBucket", c.NATS.SessionBucket, "edgepass_sessions"},
		{"keyBucket", c.NATS.KeyBucket, "edgepass_keys"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:8001"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"session.loginRateLimit", c.Session.LoginRateLimit, 60},
		{"session.loginRateBurst", c.Session.LoginRateBurst, 20},
		{"trustedProxies", c.TrustedProxies, []string{"127.0.0.0/8", "::1/128"}},
		{"oidc.groupsInclude", len(c.OIDC.GroupsInclude), 0},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

const yamlFile = `
publicURL: https://auth.example.com/
listen: 0.0.0.0:8000
oidc:
  issuer: https://idp.example.com
  clientID: from-file
  scopes: [openid, email]
  requiredGroups: [staff]
session:
  lifetime: 1h
  cookieDomain: example.com
  allowedDomains: ["*.example.com", auth.example.com]
keys:
  rotationInterval: 24h
nats:
  embedded:
    enabled: false
  urls: [nats://nats-1:4222, tls://nats-2:4222]
  user: edgepass
  password: pw
admin:
  token: ` + testToken + `
log:
  level: debug
`

const tomlFile = `
publicURL = "https://auth.example.com"
[oidc]
  issuer = "https://idp.example.com"
  clientID = "from-toml"
[session]
  lifetime = "2h"
  allowedDomains = ["auth.example.com"]
[admin]
  token = "` + testToken + `"
`

func TestLayers(t *testing.T) {
	yml := writeFile(t, "edgepass.yml", yamlFile)
	toml := writeFile(t, "edgepass.toml", tomlFile)
	tests := []struct {
		name    string
		args    []string
		environ []string
		check   func(t *testing.T, c *Configuration)
	}{
		{
			name: "yaml file",
			args: []string{"--configFile=" + yml},
			check: func(t *testing.T, c *Configuration) {
				want(t, "publicURL (trailing slash trimmed)", c.PublicURL, "https://auth.example.com")
				want(t, "clientID", c.OIDC.ClientID, "from-file")
				want(t, "scopes", c.OIDC.Scopes, []string{"openid", "email"})
				want(t, "requiredGroups", c.OIDC.RequiredGroups, []string{"staff"})
				want(t, "lifetime", time.Duration(c.Session.Lifetime), time.Hour)
				want(t, "cookieDomain", c.Session.CookieDomain, "example.com")
				want(t, "defaultRedirect", c.Session.DefaultRedirect, "https://auth.example.com/")
				want(t, "rotationInterval", time.Duration(c.Keys.RotationInterval), 24*time.Hour)
				want(t, "embedded", c.NATS.Embedded.Enabled, false)
				want(t, "urls", c.NATS.URLs, []string{"nats://nats-1:4222", "tls://nats-2:4222"})
				want(t, "groupsClaim default kept", c.OIDC.GroupsClaim, []string{"groups"})
				want(t, "log", c.Log.Level, "debug")
			},
		},
		{
			name: "toml file",
			args: []string{"--configfile", toml},
			check: func(t *testing.T, c *Configuration) {
				want(t, "clientID", c.OIDC.ClientID, "from-toml")
				want(t, "lifetime", time.Duration(c.Session.Lifetime), 2*time.Hour)
			},
		},
		{
			name:    "config file from environment",
			environ: []string{"EDGEPASS_CONFIGFILE=" + yml},
			check: func(t *testing.T, c *Configuration) {
				want(t, "clientID", c.OIDC.ClientID, "from-file")
			},
		},
		{
			name:    "environment overrides file",
			args:    []string{"--configFile=" + yml},
			environ: []string{"EDGEPASS_OIDC_CLIENTID=from-env", "EDGEPASS_SESSION_LIFETIME=30m", "PATH=/bin"},
			check: func(t *testing.T, c *Configuration) {
				want(t, "clientID", c.OIDC.ClientID, "from-env")
				want(t, "lifetime", time.Duration(c.Session.Lifetime), 30*time.Minute)
				want(t, "issuer still from file", c.OIDC.Issuer, "https://idp.example.com")
			},
		},
		{
			name:    "flags override environment and file",
			args:    []string{"--configFile=" + yml, "--oidc.clientID=from-flag", "--nats.urls=nats://a:4222,nats://b:4222"},
			environ: []string{"EDGEPASS_OIDC_CLIENTID=from-env"},
			check: func(t *testing.T, c *Configuration) {
				want(t, "clientID", c.OIDC.ClientID, "from-flag")
				want(t, "urls", c.NATS.URLs, []string{"nats://a:4222", "nats://b:4222"})
			},
		},
		{
			name:    "environment alone",
			environ: []string{"EDGEPASS_OIDC_ISSUER=http://idp:9000", "EDGEPASS_OIDC_CLIENTID=env", "EDGEPASS_ADMIN_TOKEN=" + testToken, "EDGEPASS_NATS_EMBEDDED_ENABLED=false", "EDGEPASS_NATS_URLS=nats://n:4222"},
			check: func(t *testing.T, c *Configuration) {
				want(t, "issuer", c.OIDC.Issuer, "http://idp:9000")
				want(t, "embedded", c.NATS.Embedded.Enabled, false)
				want(t, "urls", c.NATS.URLs, []string{"nats://n:4222"})
			},
		},
		{
			name:    "the CLI's EDGEPASS_ADMIN_URL does not break serve",
			args:    minimal,
			environ: []string{"EDGEPASS_ADMIN_URL=http://10.0.0.1:8001"},
			check: func(t *testing.T, c *Configuration) {
				want(t, "admin.url", c.Admin.URL, "http://10.0.0.1:8001")
			},
		},
		{
			name: "bool flag without value",
			args: append([]string{"--session.cookieSecure=false", "--nats.embedded.syncAlways"}, minimal...),
			check: func(t *testing.T, c *Configuration) {
				want(t, "cookieSecure", c.Session.CookieSecure, false)
				want(t, "syncAlways", c.NATS.Embedded.SyncAlways, true)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, tc.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func want(t *testing.T, name string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", name, got, want)
	}
}

func TestSecretFiles(t *testing.T) {
	secret := writeFile(t, "secret", "s3cr3t\n")
	token := writeFile(t, "token", "  "+testToken+"\r\n")
	empty := writeFile(t, "empty", "\n")
	missing := filepath.Join(t.TempDir(), "nope")
	base := []string{"--oidc.issuer=http://127.0.0.1:9000", "--oidc.clientID=edgepass"}

	tests := []struct {
		name       string
		args       []string
		wantErr    string
		wantSecret string
	}{
		{"both from files", append([]string{"--oidc.clientSecretFile=" + secret, "--admin.tokenFile=" + token}, base...), "", "s3cr3t"},
		{"empty secret file", append([]string{"--oidc.clientSecretFile=" + empty, "--admin.token=" + testToken}, base...), "config: oidc.clientSecretFile: secret file " + empty + " is empty", ""},
		{"missing token file", append([]string{"--admin.tokenFile=" + missing}, base...), "config: admin.tokenFile: read secret file", ""},
		{"secret and file both set", append([]string{"--oidc.clientSecret=x", "--oidc.clientSecretFile=" + secret, "--admin.token=" + testToken}, base...), "config: oidc.clientSecretFile: set either oidc.clientSecret or oidc.clientSecretFile, not both", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want(t, "clientSecret", c.OIDC.ClientSecret, tc.wantSecret)
			want(t, "admin token", c.Admin.Token, testToken)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	badYAML := writeFile(t, "bad.yml", "oidc: [unclosed\n")
	unknownKey := writeFile(t, "unknown.yml", "oidc:\n  issuer: http://x\n  colour: blue\n")
	json := writeFile(t, "cfg.json", "{}")
	tests := []struct {
		name    string
		args    []string
		environ []string
		wantErr string
	}{
		{"unknown flag", []string{"--oidc.nope=1"}, nil, "config: flags: unknown setting \"nope\""},
		{"bad duration flag", append([]string{"--session.lifetime=forever"}, minimal...), nil, "config: flags"},
		{"unknown env key", nil, []string{"EDGEPASS_OIDC_COLOUR=blue"}, "config: environment"},
		{"missing config file", []string{"--configFile=/nonexistent/edgepass.yml"}, nil, "config: configFile"},
		{"unsupported extension", []string{"--configFile=" + json}, nil, "unsupported extension"},
		{"invalid yaml", []string{"--configFile=" + badYAML}, nil, "config: configFile " + badYAML},
		{"unknown key in file", []string{"--configFile=" + unknownKey}, nil, "colour"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, tc.environ)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// The HA settings load from a file and flags: the rate limit, the proxies
// trusted for X-Forwarded-For and the groups edges get.
func TestHASettings(t *testing.T) {
	f := writeFile(t, "ha.yml", `
oidc:
  issuer: https://idp.example.com
  clientID: x
  groupsInclude: ["team-*", admins]
  requiredGroups: [admins]
session:
  loginRateLimit: 120
  loginRateBurst: 40
trustedProxies: [10.0.0.0/8, "fd00::/8", 192.0.2.7]
admin:
  token: `+testToken+`
`)
	c, err := Load([]string{"--configFile=" + f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, "groupsInclude", c.OIDC.GroupsInclude, []string{"team-*", "admins"})
	want(t, "loginRateLimit", c.Session.LoginRateLimit, 120)
	want(t, "loginRateBurst", c.Session.LoginRateBurst, 40)
	want(t, "trustedProxies", c.TrustedProxies, []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"})
	c, err = Load(append(append([]string{}, minimal...), "--session.loginRateLimit=0"), nil)
	if err != nil || c.Session.LoginRateLimit != 0 {
		t.Fatalf("rate limit off: %v, %d", err, c.Session.LoginRateLimit)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"issuer required", []string{"--oidc.clientID=x", "--admin.token=" + testToken}, "config: oidc.issuer: required; set --oidc.issuer or EDGEPASS_OIDC_ISSUER"},
		{"clientID required", []string{"--oidc.issuer=http://i", "--admin.token=" + testToken}, "config: oidc.clientID: required; set --oidc.clientID or EDGEPASS_OIDC_CLIENTID"},
		{"admin token required", []string{"--oidc.issuer=http://i", "--oidc.clientID=x"}, "config: admin.token: required"},
		{"admin token too short", []string{"--admin.token=short"}, "config: admin.token: too short"},
		{"issuer not http", []string{"--oidc.issuer=ftp://idp"}, "config: oidc.issuer: \"ftp://idp\" must start with http:// or https://"},
		{"publicURL with query", []string{"--publicURL=https://a.example.com/?x=1"}, "config: publicURL:"},
		{"publicURL relative", []string{"--publicURL=/auth"}, "config: publicURL:"},
		{"listen without port", []string{"--listen=127.0.0.1"}, "config: listen:"},
		{"scopes without openid", []string{"--oidc.scopes=email,profile"}, "config: oidc.scopes: must include openid"},
		{"lifetime too short", []string{"--session.lifetime=10s"}, "config: session.lifetime: must be at least 1m"},
		{"bad cookie name", []string{"--session.cookieName=a b"}, "config: session.cookieName"},
		{"bad cookie domain", []string{"--session.cookieDomain=https://example.com"}, "config: session.cookieDomain"},
		// Misconfigurations that would make every sign-in loop: the browser drops the cookie.
		{"secure cookie over plain http", []string{"--publicURL=http://auth.example.com", "--session.allowedDomains=*.example.com"}, "config: session.cookieSecure: publicURL http://auth.example.com is plain http"},
		{"cookie domain not covering publicURL", []string{"--publicURL=https://auth.example.com", "--session.cookieDomain=example.org"}, "config: session.cookieDomain: \"example.org\" does not contain the publicURL host \"auth.example.com\""},
		{"cookie domain suffix without dot", []string{"--publicURL=https://authexample.com", "--session.cookieDomain=example.com"}, "config: session.cookieDomain"},
		{"bad allowed domain", []string{"--session.allowedDomains=exa mple.com"}, "config: session.allowedDomains"},
		{"wildcard on a top-level name", []string{"--session.allowedDomains=*.com"}, "config: session.allowedDomains: \"*.com\" is not a valid wildcard: a wildcard needs a domain with a dot"},
		{"default redirect off-domain", []string{"--session.defaultRedirect=https://evil.example.net/"}, "config: session.defaultRedirect: host \"evil.example.net\" is not in session.allowedDomains"},
		{"default redirect not absolute", []string{"--session.defaultRedirect=/home"}, "config: session.defaultRedirect"},
		{"negative refresh", []string{"--session.refreshInterval=-1s"}, "config: session.refreshInterval"},
		{"rotation too frequent", []string{"--keys.rotationInterval=10s"}, "config: keys.rotationInterval"},
		{"external without urls", []string{"--nats.embedded.enabled=false"}, "config: nats.urls: required when nats.embedded.enabled=false"},
		{"embedded with urls", []string{"--nats.urls=nats://x:4222"}, "config: nats.urls: set only with nats.embedded.enabled=false"},
		{"bad nats url", []string{"--nats.embedded.enabled=false", "--nats.urls=http://x:4222"}, "config: nats.urls: \"http://x:4222\""},
		{"token and user", []string{"--nats.embedded.enabled=false", "--nats.urls=nats://x:4222", "--nats.token=t", "--nats.user=u"}, "config: nats.token"},
		{"password without user", []string{"--nats.embedded.enabled=false", "--nats.urls=nats://x:4222", "--nats.password=p"}, "config: nats.password"},
		{"missing credentials file", []string{"--nats.embedded.enabled=false", "--nats.urls=nats://x:4222", "--nats.credentialsFile=/nonexistent.creds"}, "config: nats.credentialsFile"},
		{"bad bucket", []string{"--nats.edgeBucket=a.b"}, "config: nats.edgeBucket"},
		{"shared bucket", []string{"--nats.keyBucket=edgepass_edge"}, "config: nats.keyBucket: \"edgepass_edge\" is already used by nats.edgeBucket"},
		{"replicas", []string{"--nats.replicas=7"}, "config: nats.replicas"},
		{"admin on public listener", []string{"--admin.listen=127.0.0.1:8000"}, "config: admin.listen: must differ from listen"},
		{"log level", []string{"--log.level=verbose"}, "config: log.level"},
		{"log format", []string{"--log.format=xml"}, "config: log.format: \"xml\": use text or json"},
		{"edge name with a dot", []string{"--nats.embedded.edges=a.b"}, "config: nats.embedded.edges: \"a.b\""},
		{"edge name clashes with the daemon", []string{"--nats.embedded.edges=edgepass-daemon"}, "config: nats.embedded.edges: \"edgepass-daemon\" is the daemon's own NATS user"},
		{"no data dir", []string{"--dataDir="}, "config: dataDir: required"},
		{"negative rate limit", []string{"--session.loginRateLimit=-1"}, "config: session.loginRateLimit: must not be negative (0 turns the limit off)"},
		{"negative burst", []string{"--session.loginRateBurst=-5"}, "config: session.loginRateBurst: must not be negative"},
		{"trusted proxy not a CIDR", []string{"--trustedProxies=traefik.internal"}, "config: trustedProxies: \"traefik.internal\" is not an IP address or CIDR"},
		{"trusted proxy bad prefix", []string{"--trustedProxies=10.0.0.0/33"}, "config: trustedProxies: \"10.0.0.0/33\""},
		{"groupsInclude with a star inside", []string{"--oidc.groupsInclude=team-*-admins"}, "config: oidc.groupsInclude: \"team-*-admins\": \"*\" may only end a prefix"},
		{"required group filtered out", []string{"--oidc.groupsInclude=team-*", "--oidc.requiredGroups=wiki-users"}, "config: oidc.requiredGroups: \"wiki-users\" is not kept by oidc.groupsInclude"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(tc.name, "required") {
				args = append(append([]string{}, minimal...), tc.args...)
			}
			_, err := Load(args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// Validate checks each section on its own, and one mistake in every
// section comes back as one error per mistake, in the order of the
// sections, so a configuration is fixed in one round.
func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	c, err := Load(minimal, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.PublicURL = "ftp://auth.example.com"            // listeners
	c.OIDC.Scopes = []string{"email"}                 // oidc
	c.Session.Lifetime = ptypes.Duration(time.Second) // session
	c.Keys.ClockSkew = ptypes.Duration(-time.Second)  // keys
	c.NATS.Replicas = 9                               // nats
	c.Admin.Listen = c.Listen                         // admin
	c.Admin.Console.Public = true                     // admin.console
	c.Events.MaxAge = ptypes.Duration(time.Minute)    // events
	c.Log.Format = "xml"                              // log
	err = c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a configuration with a mistake in every section")
	}
	var settings []string
	for _, line := range strings.Split(err.Error(), "\n") {
		setting, _, _ := strings.Cut(strings.TrimPrefix(line, "config: "), ":")
		settings = append(settings, setting)
	}
	want := []string{"publicURL", "oidc.scopes", "session.lifetime", "keys.clockSkew", "nats.replicas",
		"admin.listen", "admin.console.public", "events.maxAge", "log.format"}
	if !slices.Equal(settings, want) {
		t.Errorf("problems reported for %q, want %q (all of them, in section order):\n%v", settings, want, err)
	}
}

// The embedded server's state, credentials and encryption key all derive
// from dataDir unless set one by one; external NATS secrets come from files.
func TestDataDirDefaultsAndSecretFiles(t *testing.T) {
	pw := writeFile(t, "nats-pw", "daemon-password-0123456789\n")
	c, err := Load(append(append([]string{}, minimal...), "--dataDir=/var/lib/edgepass"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Embedded.DataDir != "/var/lib/edgepass/nats" || c.Keys.EncryptionKeyFile != "/var/lib/edgepass/encryption.key" || c.CredentialsDir() != "/var/lib/edgepass/credentials" {
		t.Errorf("derived paths: %q %q %q", c.NATS.Embedded.DataDir, c.Keys.EncryptionKeyFile, c.CredentialsDir())
	}
	if len(c.NATS.Embedded.Edges) != 1 || c.NATS.Embedded.Edges[0] != "edge" {
		t.Errorf("default edges = %q", c.NATS.Embedded.Edges)
	}
	c.NATS.Embedded.Edges = nil
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "config: nats.embedded.edges: required") {
		t.Errorf("no edges with a client port: err = %v", err)
	}
	c, err = Load(append(append([]string{}, minimal...), "--nats.embedded.enabled=false", "--nats.urls=nats://n:4222", "--nats.user=daemon", "--nats.passwordFile="+pw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Password != "daemon-password-0123456789" {
		t.Errorf("nats.passwordFile not read: %q", c.NATS.Password)
	}
	if _, err := Load(append(append([]string{}, minimal...), "--nats.embedded.enabled=false", "--nats.urls=nats://n:4222", "--nats.user=daemon", "--nats.password=x", "--nats.passwordFile="+pw), nil); err == nil || !strings.Contains(err.Error(), "set either nats.password or nats.passwordFile") {
		t.Errorf("password and passwordFile together: err = %v", err)
	}
}

// Attack (self-inflicted): a misspelled setting got paerser's terse
// "field not found, node: isuer"; the error names it and the closest
// settings, wherever it came from.
func TestUnknownSettingNamesClosest(t *testing.T) {
	file := writeFile(t, "typo.yml", "oidc:\n  isuer: http://x\n")
	cases := []struct {
		name    string
		args    []string
		environ []string
		want    string
	}{
		{"file", []string{"--configFile=" + file}, nil, `unknown setting "isuer"; did you mean oidc.issuer`},
		{"flag", []string{"--oidc.clientSecretFle=x"}, nil, `unknown setting "clientSecretFle"; did you mean oidc.clientSecretFile?`},
		{"environment", nil, []string{"EDGEPASS_SESSION_LIFETIM=1h"}, `unknown setting "lifetim"; did you mean session.lifetime?`},
		{"nothing close", []string{"--frobnicate=1"}, nil, `unknown setting "frobnicate"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, tc.environ)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	paths := SettingPaths()
	for _, want := range []string{"oidc.issuer", "nats.embedded.edges", "keys.encryptionKeyFile", "dataDir"} {
		if !slices.Contains(paths, want) {
			t.Errorf("SettingPaths lacks %s: %v", want, paths)
		}
	}
}
