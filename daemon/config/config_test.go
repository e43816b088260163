package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
		{"groupsClaim", c.OIDC.GroupsClaim, "groups"},
		{"usernameClaim", c.OIDC.UsernameClaim, "preferred_username"},
		{"lifetime", time.Duration(c.Session.Lifetime), 12 * time.Hour},
		{"cookieName", c.Session.CookieName, "edgepass_session"},
		{"cookieSecure", c.Session.CookieSecure, true},
		{"allowedDomains derived from publicURL", c.Session.AllowedDomains, []string{"127.0.0.1"}},
		{"defaultRedirect derived from publicURL", c.Session.DefaultRedirect, "http://127.0.0.1:8000/"},
		{"refreshInterval", time.Duration(c.Session.RefreshInterval), 5 * time.Minute},
		{"rotationInterval", time.Duration(c.Keys.RotationInterval), time.Duration(0)},
		{"embedded", c.NATS.Embedded.Enabled, true},
		{"embedded.listen", c.NATS.Embedded.Listen, "127.0.0.1:4222"},
		{"dataDir", c.NATS.Embedded.DataDir, "./data/nats"},
		{"edgeBucket", c.NATS.EdgeBucket, "edgepass_edge"},
		{"sessionBucket", c.NATS.SessionBucket, "edgepass_sessions"},
		{"keyBucket", c.NATS.KeyBucket, "edgepass_keys"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:8001"},
		{"log.level", c.Log.Level, "info"},
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
				want(t, "groupsClaim default kept", c.OIDC.GroupsClaim, "groups")
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
		{"unknown flag", []string{"--oidc.nope=1"}, nil, "config: flags: field not found"},
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
		{"missing data dir", []string{"--nats.embedded.dataDir="}, "config: nats.embedded.dataDir: required"},
		{"bad bucket", []string{"--nats.edgeBucket=a.b"}, "config: nats.edgeBucket"},
		{"shared bucket", []string{"--nats.keyBucket=edgepass_edge"}, "config: nats.keyBucket: \"edgepass_edge\" is already used by nats.edgeBucket"},
		{"replicas", []string{"--nats.replicas=7"}, "config: nats.replicas"},
		{"admin on public listener", []string{"--admin.listen=127.0.0.1:8000"}, "config: admin.listen: must differ from listen"},
		{"log level", []string{"--log.level=verbose"}, "config: log.level"},
		{"short edge password", []string{"--nats.embedded.edgePassword=short"}, "config: nats.embedded.edgePassword: too short"},
		{"edge user clashes with the daemon", []string{"--nats.embedded.edgePassword=0123456789abcdef", "--nats.embedded.edgeUser=edgepass-daemon"}, "config: nats.embedded.edgeUser"},
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

func TestEdgePasswordFileAndExposure(t *testing.T) {
	pw := writeFile(t, "edge-pw", "edge-password-0123456789\n")
	tests := []struct {
		name    string
		args    []string
		exposed bool
	}{
		{"default loopback", nil, false},
		{"all interfaces without auth", []string{"--nats.embedded.listen=0.0.0.0:4222"}, true},
		{"pod IP without auth", []string{"--nats.embedded.listen=10.1.2.3:4222"}, true},
		{"host name without auth", []string{"--nats.embedded.listen=nats.local:4222"}, true},
		{"localhost", []string{"--nats.embedded.listen=localhost:4222"}, false},
		{"IPv6 loopback", []string{"--nats.embedded.listen=[::1]:4222"}, false},
		{"in-process only", []string{"--nats.embedded.listen="}, false},
		{"all interfaces with auth", []string{"--nats.embedded.listen=0.0.0.0:4222", "--nats.embedded.edgePasswordFile=" + pw}, false},
		{"external NATS", []string{"--nats.embedded.enabled=false", "--nats.urls=nats://n:4222", "--nats.embedded.listen=0.0.0.0:4222"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(append(append([]string{}, minimal...), tc.args...), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ExposedWithoutAuth(); got != tc.exposed {
				t.Errorf("ExposedWithoutAuth = %v, want %v", got, tc.exposed)
			}
			if strings.Contains(tc.name, "with auth") && c.NATS.Embedded.EdgePassword != "edge-password-0123456789" {
				t.Errorf("edge password = %q", c.NATS.Embedded.EdgePassword)
			}
		})
	}
}
