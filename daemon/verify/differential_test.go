package verify_test

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/verify"
	edgepass "github.com/edgepass/edgepass/plugin"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

const issuer = "https://auth.example.com"

// ringKeys is a key ring with one key, as verify.KeySource.
type ringKeys struct{ ks *token.KeySet }

func (r ringKeys) PublicKeys() *token.KeySet { return r.ks }
func (r ringKeys) Verifier() *token.Verifier {
	return &token.Verifier{Issuer: issuer, Audience: "edgepass", Skew: 30 * time.Second}
}

// route is one route's settings, given to the plugin as middleware settings
// and to /verify as its query.
type route struct {
	name   string
	groups []string
	users  []string
	domain []string
	sep    string
}

func (r route) query() string {
	q := url.Values{}
	for _, h := range [][2]string{{"userHeader", "X-Auth-User"}, {"emailHeader", "X-Auth-Email"}, {"groupsHeader", "X-Auth-Groups"}, {"nameHeader", "X-Auth-Name"}, {"subjectHeader", "X-Auth-Subject"}} {
		q.Set(h[0], h[1])
	}
	if len(r.groups) > 0 {
		q.Set("allowedGroups", strings.Join(r.groups, ","))
	}
	if len(r.users) > 0 {
		q.Set("allowedUsers", strings.Join(r.users, ","))
	}
	if len(r.domain) > 0 {
		q.Set("allowedEmailDomains", strings.Join(r.domain, ","))
	}
	if r.sep != "" {
		q.Set("groupsSeparator", r.sep)
	}
	return q.Encode()
}

var identityNames = []string{"X-Auth-User", "X-Auth-Email", "X-Auth-Groups", "X-Auth-Name", "X-Auth-Subject"}

// answer is what a client and a backend see of one decision.
type answer struct {
	status    int
	toLogin   bool
	challenge string
	identity  string // sorted name=value lines
}

func identityOf(h http.Header) string {
	var lines []string
	for _, n := range identityNames {
		if v := h.Values(n); len(v) > 0 {
			lines = append(lines, n+"="+strings.Join(v, "|"))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// The plugin and /verify are two enforcement points of one decision
// (package policy): fed the same edge facts, the same tokens, rules and
// request shapes, they must give the same status, challenge and identity
// headers. Each row was a way they once drifted apart (groups with the
// separator, control characters, fixed header names, navigation rules).
func TestPluginAndVerifyDecideAlike(t *testing.T) {
	ctx := natstest.Context(t)
	srv := natstest.StartListening(t)
	_, anchor, _ := ed25519.GenerateKey(nil)
	signPub, signKey, _ := ed25519.GenerateKey(nil)
	keys := token.NewKeySet(token.Key{ID: "k1", Public: signPub})

	pub, err := edgepub.OpenPublisher(ctx, srv.JS, edgepub.Options{Bucket: natsedge.DefaultBucket, Lifetime: time.Hour, Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := keys.MarshalJWKS()
	if err := pub.PublishKeys(ctx, edgestate.KeysFact{JWKS: jwks, MaxTokenLifetime: 3600}); err != nil {
		t.Fatal(err)
	}
	anchorText := token.FormatAnchor(anchor.Public().(ed25519.PublicKey))
	anchors, _ := token.ParseAnchors([]string{anchorText})
	w, err := edgepub.Follow(ctx, srv.JS, natsedge.DefaultBucket, anchors, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)

	now := time.Now()
	mk := func(mod func(c *token.Claims)) string {
		c := &token.Claims{Issuer: issuer, Audience: token.Audience{"edgepass"}, Subject: "sub-alice", SessionID: "sid-alice-000000000000000",
			IssuedAt: now.Add(-time.Minute).Unix(), Expiry: now.Add(30 * time.Minute).Unix(),
			Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice", Groups: []string{"dev", "x,admins", "ops"}}
		if mod != nil {
			mod(c)
		}
		raw, err := token.Sign(c, "k1", signKey)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tokens := []struct{ name, raw string }{
		{"none", ""},
		{"alice, a group with the separator", mk(nil)},
		{"control characters and an LDAP DN", mk(func(c *token.Claims) {
			c.Name = "Mal\r\nX-Auth-User: admin"
			c.Groups = []string{"cn=ops,dc=example", "a\nb", "admins", "ops;x"}
		})},
		{"no username: email names the user", mk(func(c *token.Claims) { c.PreferredUsername = "" })},
		{"bob, user revoked", mk(func(c *token.Claims) {
			c.Subject, c.SessionID, c.PreferredUsername = "sub-bob", "sid-bob-00000000000000000", "bob"
		})},
		{"carol, session revoked", mk(func(c *token.Claims) { c.Subject, c.SessionID = "sub-carol", "sid-carol-0000000000000000" })},
		{"dave, groups overridden to admins", mk(func(c *token.Claims) {
			c.Subject, c.SessionID, c.Email, c.Groups = "sub-dave", "sid-dave-00000000000000000", "dave@example.org", []string{"dev"}
		})},
		{"too long", mk(func(c *token.Claims) { c.Expiry = c.IssuedAt + 100*24*3600 })},
		{"expired", mk(func(c *token.Claims) { c.IssuedAt, c.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix() })},
		{"wrong issuer", mk(func(c *token.Claims) { c.Issuer = "https://evil.example.net" })},
	}
	if err := pub.RevokeUser(ctx, "sub-bob", now); err != nil {
		t.Fatal(err)
	}
	if err := pub.RevokeSession(ctx, "sid-carol-0000000000000000", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := pub.SetGroups(ctx, "sub-dave", []string{"admins", "dev"}); err != nil {
		t.Fatal(err)
	}
	// The probe is revoked last: once an enforcement point refuses it, it
	// has applied every fact before it (the bucket is one ordered stream).
	probe := mk(func(c *token.Claims) { c.Subject, c.SessionID = "sub-probe", "sid-probe-0000000000000000" })
	if err := pub.RevokeSession(ctx, "sid-probe-0000000000000000", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	routes := []route{
		{name: "anyone"},
		{name: "admins, ; separator", groups: []string{"admins"}, sep: ";"},
		{name: "bob or example.org", users: []string{"bob"}, domain: []string{"example.org"}},
	}
	shapes := []struct {
		name, method string
		header       http.Header
	}{
		{"navigation", http.MethodGet, http.Header{"Accept": {"text/html,application/xhtml+xml"}}},
		{"HEAD navigation", http.MethodHead, http.Header{"Accept": {"TEXT/HTML"}}},
		{"API", http.MethodGet, http.Header{"Accept": {"application/json"}}},
		{"XHR", http.MethodGet, http.Header{"Accept": {"text/html"}, "X-Requested-With": {"XMLHttpRequest"}}},
		{"POST", http.MethodPost, http.Header{"Accept": {"text/html"}}},
	}

	vh, err := verify.New(verify.Options{PublicURL: issuer, Keys: ringKeys{keys}, State: w.State(), AllowedDomains: []string{"*.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	passwordFile := srv.Credentials.Edges[0].File
	compared, admitted := 0, 0
	defer func() {
		t.Logf("%d answers compared, %d admitted", compared, admitted)
		if admitted == 0 || admitted == compared {
			t.Error("the table admits everything or nothing: it compares no decisions")
		}
	}()
	for ri, rt := range routes {
		var seen http.Header
		next := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			seen = r.Header.Clone()
			rw.WriteHeader(http.StatusOK)
		})
		cfg := edgepass.CreateConfig()
		cfg.LoginURL, cfg.Issuer = issuer+"/login", issuer
		cfg.TrustAnchors = []string{anchorText}
		cfg.UserHeader, cfg.EmailHeader, cfg.GroupsHeader, cfg.NameHeader, cfg.SubjectHeader = identityNames[0], identityNames[1], identityNames[2], identityNames[3], identityNames[4]
		cfg.AllowedGroups, cfg.AllowedUsers, cfg.AllowedEmailDomains = rt.groups, rt.users, rt.domain
		if rt.sep != "" {
			cfg.GroupsSeparator = rt.sep
		}
		cfg.NATS.URLs = []string{srv.ClientURL()}
		cfg.NATS.User, cfg.NATS.PasswordFile = natstest.EdgeUser, passwordFile
		cfg.NATS.ReplicaID = fmt.Sprintf("differential-%d", ri)
		plugin, err := edgepass.New(ctx, next, cfg, "differential")
		if err != nil {
			t.Fatal(err)
		}
		// browser gives r what the browser's request to
		// https://app.example.com/page?x=1 carries through Traefik: headers
		// h, the forwarded scheme and host, and the session cookie raw.
		browser := func(r *http.Request, raw string, h http.Header) *http.Request {
			for k, v := range h {
				r.Header[k] = v
			}
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "app.example.com")
			if raw != "" {
				r.Header.Set("Cookie", "edgepass_session="+raw)
			}
			return r
		}
		viaPlugin := func(raw string, method string, h http.Header) answer {
			seen = nil
			r := browser(httptest.NewRequest(method, "https://app.example.com/page?x=1", nil), raw, h)
			rw := httptest.NewRecorder()
			plugin.ServeHTTP(rw, r)
			a := answer{status: rw.Code, toLogin: strings.HasPrefix(rw.Header().Get("Location"), issuer+"/login"), challenge: rw.Header().Get("WWW-Authenticate")}
			if seen != nil {
				a.identity = identityOf(seen)
			}
			return a
		}
		viaVerify := func(raw string, method string, h http.Header) answer {
			r := browser(httptest.NewRequest(http.MethodGet, "/verify?"+rt.query(), nil), raw, h)
			r.Header.Set("X-Forwarded-Method", method)
			r.Header.Set("X-Forwarded-Uri", "/page?x=1")
			rw := httptest.NewRecorder()
			vh.ServeHTTP(rw, r)
			a := answer{status: rw.Code, toLogin: strings.HasPrefix(rw.Header().Get("Location"), issuer+"/login"), challenge: rw.Header().Get("WWW-Authenticate")}
			if rw.Code == http.StatusOK {
				a.identity = identityOf(rw.Header())
			}
			return a
		}
		// Both follow the bucket: wait until both refuse the probe.
		deadline := time.Now().Add(15 * time.Second)
		for {
			p := viaPlugin(probe, http.MethodGet, http.Header{"Accept": {"application/json"}})
			v := viaVerify(probe, http.MethodGet, http.Header{"Accept": {"application/json"}})
			if p.status == http.StatusUnauthorized && v.status == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the plugin (%d) or /verify (%d) never applied the edge facts", rt.name, p.status, v.status)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, tk := range tokens {
			for _, sh := range shapes {
				p := viaPlugin(tk.raw, sh.method, sh.header)
				v := viaVerify(tk.raw, sh.method, sh.header)
				compared++
				if p.status == http.StatusOK {
					admitted++
				}
				if p != v {
					t.Errorf("%s / %s / %s:\n plugin  %+v\n /verify %+v", rt.name, tk.name, sh.name, p, v)
				}
			}
		}
	}
}
