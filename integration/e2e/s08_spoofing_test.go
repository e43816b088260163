package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/integration/harness"
)

// identityHeaders are the names a backend may trust as identity: the ones
// the harness configures, its extra stripHeaders entry, and the names the
// plugin always strips (docs/contracts.md, stripHeaders).
var identityHeaders = []string{
	harness.HeaderUser, harness.HeaderEmail, harness.HeaderGroups, harness.HeaderName, harness.HeaderSubject,
	harness.HeaderExtraStrip,
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Remote-User",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username",
	"X-Authentik-Username", "X-Authentik-Groups", "X-Authentik-Email", "X-Authentik-Uid",
	"X-Edgepass-User", "X-Edgepass-Groups",
}

// spellings returns the ways a client can spell a header name that CGI,
// PHP and WSGI backends (and case-insensitive HTTP) fold into the same one.
func spellings(name string) []string {
	under := strings.ReplaceAll(name, "-", "_")
	return []string{
		name,
		strings.ToLower(name),
		strings.ToUpper(name),
		under,
		strings.ToLower(under),
		strings.ToUpper(under),
	}
}

// Scenario 8: every identity header name, in several casings and with
// underscores, sent by the client never reaches the backend; only the
// verified values do — through the plugin and through ForwardAuth.
func TestHeaderSpoofingNeverReachesBackend(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	verified := map[string]string{
		harness.NormalizeHeaderName(harness.HeaderUser):    "alice",
		harness.NormalizeHeaderName(harness.HeaderEmail):   harness.AliceEmail,
		harness.NormalizeHeaderName(harness.HeaderName):    harness.AliceName,
		harness.NormalizeHeaderName(harness.HeaderSubject): "alice",
		harness.NormalizeHeaderName(harness.HeaderGroups):  "",
	}
	forged := http.Header{}
	for _, name := range identityHeaders {
		for i, sp := range spellings(name) {
			// Set the map directly: Go would canonicalize names given to Set.
			forged[sp] = append(forged[sp], "forged-"+string(rune('a'+i)))
		}
	}

	type target struct {
		name   string
		path   string
		header http.Header
		// signed: verified identity headers may be present; require: they must.
		signed, require bool
	}
	targets := []target{
		{"signed-in app route", harness.PathApp + "/spoof", bearer(alice.token), true, true},
		{"public path without a session", harness.PathPublic + "/spoof", http.Header{}, false, false},
		// Whether a public path also identifies a signed-in user is the
		// plugin's choice; if it does, only verified values may appear.
		{"public path with a session", harness.PathPublic + "/spoof", bearer(alice.token), true, false},
		// The daemon's /verify through Traefik's ForwardAuth with the
		// authResponseHeadersRegex policy builds: the same names are
		// stripped in every spelling (X_auth_user once got through).
		{"ForwardAuth route", harness.PathFwd + "/spoof", bearer(alice.token), true, true},
	}
	for _, tr := range s.Traefiks {
		for _, tg := range targets {
			h := http.Header{}
			for k, v := range forged {
				h[k] = v
			}
			for k, v := range tg.header {
				h[k] = v
			}
			code, body, e := get(t, tr.URL+tg.path, h)
			if code != http.StatusOK || e == nil {
				t.Fatalf("%s %s: %d %.300s", tr.Spec.Name, tg.name, code, body)
			}
			for got, vals := range e.Headers {
				norm := harness.NormalizeHeaderName(got)
				forgedName := false
				for _, name := range identityHeaders {
					if harness.NormalizeHeaderName(name) == norm {
						forgedName = true
					}
				}
				for _, v := range vals {
					if strings.Contains(v, "forged-") {
						t.Errorf("%s %s: client-supplied %s: %q reached the backend", tr.Spec.Name, tg.name, got, v)
					}
				}
				if !forgedName {
					continue
				}
				want, isVerified := verified[norm]
				switch {
				case !isVerified:
					t.Errorf("%s %s: identity header %s reached the backend: %q", tr.Spec.Name, tg.name, got, vals)
				case !tg.signed:
					t.Errorf("%s %s: identity header %s set without a session: %q", tr.Spec.Name, tg.name, got, vals)
				case got != http.CanonicalHeaderKey(got) || len(vals) != 1:
					t.Errorf("%s %s: identity header spelled %q with values %q; want one canonical header", tr.Spec.Name, tg.name, got, vals)
				case want != "" && vals[0] != want:
					t.Errorf("%s %s: %s = %q, want %q", tr.Spec.Name, tg.name, got, vals[0], want)
				}
			}
			if tg.require {
				checkAliceHeaders(t, e)
			}
		}
	}
}
