package verify

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

const base = "https://auth.example.com"

var (
	now     = time.Unix(1_700_000_000, 0)
	pub, pk = mustKey()
	sid     = strings.Repeat("s", 43)
)

func mustKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	p, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return p, k
}

// staticKeys is a key ring with fixed keys, issuer base and a clock skew.
type staticKeys struct {
	ks   *token.KeySet
	skew time.Duration
}

func (s staticKeys) PublicKeys() *token.KeySet { return s.ks }
func (s staticKeys) Verifier() *token.Verifier {
	return &token.Verifier{Issuer: base, Audience: "edgepass", Skew: s.skew}
}

func claims() *token.Claims {
	return &token.Claims{Issuer: base, Audience: token.Audience{"edgepass"}, Subject: "sub-1", SessionID: sid,
		IssuedAt: now.Add(-time.Minute).Unix(), Expiry: now.Add(time.Hour).Unix(),
		Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice", Groups: []string{"staff", "dev"}}
}

func sign(t *testing.T, c *token.Claims) string {
	t.Helper()
	raw, err := token.Sign(c, "k1", pk)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newHandler(t *testing.T, st *edgestate.State) *Handler {
	t.Helper()
	if st == nil {
		st = edgestate.New()
	}
	h, err := New(Options{PublicURL: base, CookieName: "edgepass_session",
		Keys: staticKeys{ks: token.NewKeySet(token.Key{ID: "k1", Public: pub}), skew: 30 * time.Second}, State: st,
		AllowedDomains: []string{"*.example.com"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func forwarded(mod func(r *http.Request)) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/verify", nil)
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-Host", "app.example.com")
	r.Header.Set("X-Forwarded-Uri", "/page?x=1")
	if mod != nil {
		mod(r)
	}
	return r
}

func withCookie(v string) func(*http.Request) {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "edgepass_session", Value: v}) }
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestVerifyAcceptsValidToken(t *testing.T) {
	h := newHandler(t, nil)
	raw := sign(t, claims())
	tests := []struct {
		name string
		mod  func(*http.Request)
	}{
		{"cookie", withCookie(raw)},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+raw) }},
		{"lower-case bearer", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+raw) }},
		{"invalid cookie, valid bearer", func(r *http.Request) {
			withCookie("garbage")(r)
			r.Header.Set("Authorization", "Bearer "+raw)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(h, forwarded(tc.mod))
			if rec.Code != 200 {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			want := map[string]string{HeaderUser: "alice", HeaderEmail: "alice@example.com", HeaderName: "Alice", HeaderGroups: "staff,dev"}
			for k, v := range want {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	h := newHandler(t, nil)
	_, otherKey := mustKey()
	forged, _ := token.Sign(claims(), "k1", otherKey)
	expired := claims()
	expired.IssuedAt, expired.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	wrongIss := claims()
	wrongIss.Issuer = "https://evil.example.net"
	wrongAud := claims()
	wrongAud.Audience = token.Audience{"someone-else"}
	future := claims()
	future.NotBefore = now.Add(time.Hour).Unix()
	valid := sign(t, claims())
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding
	algNone := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + "."
	algHS := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + "." + parts[2]
	elevated := b64.EncodeToString([]byte(strings.Replace(mustDecode(parts[1]), `"staff"`, `"admins"`, 1)))

	tests := []struct {
		name, raw string
	}{
		// Attack: a token signed by a key that is not the daemon's.
		{"forged signature", forged},
		// Attack: alg=none / HMAC confusion.
		{"alg none", algNone},
		{"alg HS256", algHS},
		// Attack: payload edited to add a group, signature kept.
		{"edited payload", parts[0] + "." + elevated + "." + parts[2]},
		{"expired", sign(t, expired)},
		{"wrong issuer", sign(t, wrongIss)},
		{"wrong audience", sign(t, wrongAud)},
		{"not yet valid", sign(t, future)},
		{"oversized", strings.Repeat("a", token.MaxTokenSize+1)},
		{"empty", ""},
		{"garbage", "a.b.c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(h, forwarded(func(r *http.Request) {
				r.Header.Set("Authorization", "Bearer "+tc.raw)
				r.Header.Set("X-Auth-User", "admin") // client-supplied identity
			}))
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rec.Code)
			}
			wantAuth := `Bearer realm="edgepass"`
			if tc.raw != "" {
				wantAuth = `Bearer realm="edgepass", error="invalid_token", error_description="`
			}
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), wantAuth) || rec.Body.String() != `{"error":"authentication required"}`+"\n" {
				t.Errorf("401 response: %v %q", rec.Header(), rec.Body)
			}
			if rec.Header().Get(HeaderUser) != "" {
				t.Error("refusal carries an identity header")
			}
		})
	}
}

func mustDecode(s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// anchor signs the edge facts of these tests.
var _, anchor = mustKey()

func anchoredState() *edgestate.State {
	ap := anchor.Public().(ed25519.PublicKey)
	return edgestate.NewWithAnchors(token.NewKeySet(token.Key{ID: token.AnchorID(ap), Public: ap}))
}

func TestVerifyAppliesEdgeState(t *testing.T) {
	st := anchoredState()
	h := newHandler(t, st)
	raw := sign(t, claims())
	sk := token.SubjectKey("sub-1")
	apply := func(key, value string) {
		t.Helper()
		if err := st.Apply(key, "", []byte(value), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	get := func() *httptest.ResponseRecorder { return serve(h, forwarded(withCookie(raw))) }

	groups, err := edgestate.SignGroups(sk, edgestate.GroupsFact{Iat: now.UnixMilli(), Groups: []string{"admins"}, At: now.Unix(), Exp: now.Add(time.Hour).Unix()}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	apply("groups."+sk, string(groups))
	if rec := get(); rec.Code != 200 || rec.Header().Get(HeaderGroups) != "admins" {
		t.Errorf("group override: %d %q", rec.Code, rec.Header().Get(HeaderGroups))
	}

	// Attack: replaying a token after logout.
	apply("revoke.session."+sid, fmt.Sprintf(`{"exp":%d}`, now.Add(time.Hour).Unix()))
	if rec := get(); rec.Code != http.StatusUnauthorized {
		t.Errorf("revoked session: status %d, want 401", rec.Code)
	}
	// Attack: deleting the revocation from the bucket does not lift it.
	if err := st.Apply("revoke.session."+sid, "DEL", nil, 2, now); err == nil {
		t.Error("a delete of a revocation was applied")
	}
	if rec := get(); rec.Code != http.StatusUnauthorized {
		t.Errorf("after a delete of the revocation: status %d, want 401", rec.Code)
	}

	// Attack: a disabled user's older tokens.
	st2 := anchoredState()
	h = newHandler(t, st2)
	if err := st2.Apply("revoke.user."+sk, "", []byte(fmt.Sprintf(`{"before":%d,"exp":%d}`, now.Unix(), now.Add(time.Hour).Unix())), 1, now); err != nil {
		t.Fatal(err)
	}
	if rec := serve(h, forwarded(withCookie(raw))); rec.Code != http.StatusUnauthorized {
		t.Errorf("revoked user: status %d, want 401", rec.Code)
	}
	fresh := claims()
	fresh.IssuedAt = now.Add(time.Second).Unix()
	if rec := serve(h, forwarded(withCookie(sign(t, fresh)))); rec.Code != 200 {
		t.Errorf("token issued after the user revocation: status %d, want 200", rec.Code)
	}
}

func TestVerifyRefusesTokenLongerThanPublishedLifetime(t *testing.T) {
	// Attack: a token minted with a leaked key for a year must not pass /verify when edges bound lifetimes to the published maximum.
	st := anchoredState()
	h := newHandler(t, st)
	jwks, _ := token.NewKeySet(token.Key{ID: "k1", Public: pub}).MarshalJWKS()
	kf, err := edgestate.SignKeys(edgestate.KeysFact{Iat: now.UnixMilli(), JWKS: jwks, MaxTokenLifetime: int64(12 * time.Hour / time.Second)}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(edgestate.KeyKeys, "", kf, 1, now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		lifetime time.Duration
		status   int
	}{
		{"within the bound", 12 * time.Hour, 200},
		{"a year", 365 * 24 * time.Hour, http.StatusUnauthorized},
		{"one second over", 12*time.Hour + time.Second, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		c := claims()
		c.Expiry = c.IssuedAt + int64(tc.lifetime/time.Second)
		if rec := serve(h, forwarded(withCookie(sign(t, c)))); rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, rec.Code, tc.status)
		}
	}
}

func TestVerifyRedirectsBrowsers(t *testing.T) {
	h := newHandler(t, nil)
	browser := func(mod func(r *http.Request)) *http.Request {
		return forwarded(func(r *http.Request) {
			r.Header.Set("Accept", "text/html,application/xhtml+xml")
			if mod != nil {
				mod(r)
			}
		})
	}
	login := base + "/login"
	tests := []struct {
		name     string
		req      *http.Request
		status   int
		location string
	}{
		{"navigation", browser(nil), 302, login + "?rd=" + url.QueryEscape("https://app.example.com/page?x=1")},
		{"no uri", browser(func(r *http.Request) { r.Header.Del("X-Forwarded-Uri") }), 302, login + "?rd=" + url.QueryEscape("https://app.example.com/")},
		{"host with port", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Host", "app.example.com:8443") }), 302, login + "?rd=" + url.QueryEscape("https://app.example.com:8443/page?x=1")},
		// Attack: open redirect through forged X-Forwarded-* headers.
		{"foreign host", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Host", "evil.example.net") }), 302, login},
		{"suffix trick", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Host", "app.example.com.evil.net") }), 302, login},
		{"userinfo trick", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Host", "app.example.com@evil.net") }), 302, login},
		{"scheme-relative uri", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Uri", "//evil.net/x") }), 302, login},
		{"backslash uri", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Uri", "/\\evil.net") }), 302, login},
		{"javascript scheme", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "javascript") }), 302, login},
		{"header splitting", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Uri", "/a\r\nSet-Cookie: x=1") }), 302, login},
		{"api client", forwarded(nil), 401, ""},
		{"xhr", browser(func(r *http.Request) { r.Header.Set("X-Requested-With", "XMLHttpRequest") }), 401, ""},
		{"form post", browser(func(r *http.Request) { r.Header.Set("X-Forwarded-Method", "POST") }), 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(h, tc.req)
			if rec.Code != tc.status || rec.Header().Get("Location") != tc.location {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Header().Get("Location"), tc.status, tc.location)
			}
		})
	}
}

func TestVerifyAuthorizesRoutes(t *testing.T) {
	h := newHandler(t, nil)
	raw := sign(t, claims())
	tests := []struct {
		query  string
		status int
	}{
		{"", 200},
		{"?allowedGroups=dev", 200},
		{"?allowedGroups=admins,ops", 403},
		{"?allowedUsers=alice", 200},
		{"?allowedUsers=sub-1", 200},
		{"?allowedUsers=bob", 403},
		{"?allowedEmailDomains=example.com", 200},
		{"?allowedEmailDomains=example.org", 403},
		{"?allowedGroups=admins&allowedUsers=alice", 200},
	}
	for _, tc := range tests {
		r := forwarded(withCookie(raw))
		r.URL, _ = url.Parse("/verify" + tc.query)
		rec := serve(h, r)
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.query, rec.Code, tc.status)
		}
		if tc.status == 403 && (rec.Header().Get(HeaderUser) != "" || rec.Body.String() != `{"error":"forbidden"}`+"\n") {
			t.Errorf("%s: 403 response %v %q", tc.query, rec.Header(), rec.Body)
		}
	}
}

func TestVerifyStripsControlCharactersFromClaims(t *testing.T) {
	// Attack: an IdP-supplied name with CR/LF trying to inject a header downstream.
	h := newHandler(t, nil)
	c := claims()
	c.Name = "Alice\r\nX-Admin: yes"
	c.Groups = []string{"a\nb"}
	rec := serve(h, forwarded(withCookie(sign(t, c))))
	// The plugin's rules (policy): control characters become spaces, and a
	// group carrying one is left out rather than glued to another.
	if rec.Code != 200 || rec.Header().Get(HeaderName) != "Alice  X-Admin: yes" || rec.Header().Get(HeaderGroups) != "" {
		t.Errorf("headers = %q %q", rec.Header().Get(HeaderName), rec.Header().Get(HeaderGroups))
	}
}

func TestVerifyBoundsCandidateTokens(t *testing.T) {
	// Attack: a request carrying many session cookies to multiply signature checks.
	h := newHandler(t, nil)
	r := forwarded(nil)
	for i := 0; i < 50; i++ {
		withCookie(fmt.Sprintf("junk%d.x.y", i))(r)
	}
	withCookie(sign(t, claims()))(r)
	if got := len(h.candidates(r)); got != maxCandidates {
		t.Errorf("%d candidates, want %d", got, maxCandidates)
	}
	if rec := serve(h, r); rec.Code != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", rec.Code)
	}
}

func TestVerifyMethodAndOptions(t *testing.T) {
	h := newHandler(t, nil)
	if rec := serve(h, httptest.NewRequest(http.MethodPost, "/verify", nil)); rec.Code != 405 {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
	if _, err := New(Options{PublicURL: base}); err == nil {
		t.Error("New without Keys/State = nil error")
	}
	if _, err := New(Options{PublicURL: base, Keys: staticKeys{}, State: edgestate.New(), AllowedDomains: []string{"https://example.com"}}); err == nil {
		t.Error("New with a URL in AllowedDomains = nil error")
	}
}

func FuzzReturnURL(f *testing.F) {
	h, _ := New(Options{PublicURL: base, Keys: staticKeys{}, State: edgestate.New(), AllowedDomains: []string{"*.example.com"}})
	f.Add("https", "app.example.com", "/x")
	f.Add("http", "evil.net", "//a")
	f.Add("https", "a.example.com:1", "/\\x")
	f.Fuzz(func(t *testing.T, proto, host, uri string) {
		r := httptest.NewRequest(http.MethodGet, "/verify", nil)
		r.Header = http.Header{"X-Forwarded-Proto": {proto}, "X-Forwarded-Host": {host}, "X-Forwarded-Uri": {uri}}
		rd := h.returnURL(r)
		if rd == "" {
			return
		}
		u, err := url.Parse(rd)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.HasSuffix(strings.ToLower(u.Hostname()), ".example.com") || u.User != nil {
			t.Fatalf("returnURL accepted %q", rd)
		}
	})
}

func FuzzVerifyNeverAdmitsForgedTokens(f *testing.F) {
	h, _ := New(Options{PublicURL: base, Keys: staticKeys{ks: token.NewKeySet(token.Key{ID: "k1", Public: pub})}, State: edgestate.New(),
		Now: func() time.Time { return now }})
	_, other := mustKey()
	forged, _ := token.Sign(claims(), "k1", other)
	f.Add(forged)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Repeat(".", 10))
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/verify", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		if rec := serve(h, r); rec.Code == 200 {
			t.Fatalf("admitted a token not signed by the daemon: %q", raw)
		}
	})
}

// BenchmarkVerify is the cost of one ForwardAuth check with a valid cookie
// (one signature verification, one edge state lookup).
func BenchmarkVerify(b *testing.B) {
	st := edgestate.New()
	h, _ := New(Options{PublicURL: base, Keys: staticKeys{ks: token.NewKeySet(token.Key{ID: "k1", Public: pub})}, State: st,
		Now: func() time.Time { return now }})
	raw, _ := token.Sign(claims(), "k1", pk)
	r := httptest.NewRequest(http.MethodGet, "/verify", nil)
	r.AddCookie(&http.Cookie{Name: "edgepass_session", Value: raw})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

type swapKeys struct{ staticKeys }

func (s *swapKeys) PublicKeys() *token.KeySet { return s.ks }

func TestVerifyCacheHonoursExpiryAndKeyChanges(t *testing.T) {
	// Attack: replaying a token the cache once accepted, after it expired
	// or after its key was withdrawn.
	clock := now
	keys := &swapKeys{staticKeys{ks: token.NewKeySet(token.Key{ID: "k1", Public: pub}), skew: 30 * time.Second}}
	h, err := New(Options{PublicURL: base, Keys: keys, State: edgestate.New(),
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, claims())
	get := func() int { return serve(h, forwarded(withCookie(raw))).Code }
	if get() != 200 || get() != 200 {
		t.Fatal("valid token refused")
	}
	if h.cache.Len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", h.cache.Len())
	}

	clock = now.Add(time.Hour + 29*time.Second) // within skew after exp
	if get() != 200 {
		t.Error("token refused within the clock skew")
	}
	clock = now.Add(time.Hour + 31*time.Second)
	if get() != http.StatusUnauthorized {
		t.Error("cached token accepted after exp + skew")
	}

	clock = now
	if get() != 200 {
		t.Fatal("valid token refused")
	}
	_, otherPub := mustKey()
	keys.ks = token.NewKeySet(token.Key{ID: "k2", Public: otherPub.Public().(ed25519.PublicKey)})
	if get() != http.StatusUnauthorized {
		t.Error("cached token accepted after its key left the key set")
	}
}

func TestVerifyReportsOutcomes(t *testing.T) {
	st := edgestate.New()
	h := newHandler(t, st)
	var got []string
	h.o.Observe = func(o string) { got = append(got, o) }
	raw := sign(t, claims())
	serve(h, forwarded(withCookie(raw)))
	r := forwarded(withCookie(raw))
	r.URL.RawQuery = "allowedGroups=nobody"
	serve(h, r)
	serve(h, forwarded(nil))
	if err := st.Apply("revoke.session."+sid, "", []byte(fmt.Sprintf(`{"exp":%d}`, now.Add(time.Hour).Unix())), 1, now); err != nil {
		t.Fatal(err)
	}
	serve(h, forwarded(withCookie(raw)))
	if want := []string{"ok", "forbidden", "unauthenticated", "revoked"}; !slices.Equal(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
}

// X-Auth-User names the user as the plugin does: preferred_username, else
// email, else sub.
func TestVerifyUserHeaderFallback(t *testing.T) {
	h := newHandler(t, nil)
	noName := claims()
	noName.PreferredUsername = ""
	subOnly := claims()
	subOnly.PreferredUsername, subOnly.Email = "", ""
	for want, c := range map[string]*token.Claims{"alice": claims(), "alice@example.com": noName, "sub-1": subOnly} {
		rec := serve(h, forwarded(withCookie(sign(t, c))))
		if got := rec.Header().Get(HeaderUser); rec.Code != 200 || got != want {
			t.Errorf("status %d, %s = %q, want %q", rec.Code, HeaderUser, got, want)
		}
	}
}

// Attack (self-inflicted): a misspelled route setting in the ForwardAuth
// address (allowedGroup=admins) would admit everyone; /verify refuses every
// request until it is fixed.
func TestVerifyRefusesUnknownSettings(t *testing.T) {
	h := newHandler(t, nil)
	for _, q := range []string{"?allowedGroup=admins", "?userHeadr=X-User", "?allowedGroups=a&frobnicate=1", "?userHeader=X%20User", "?%zz"} {
		r := forwarded(withCookie(sign(t, claims())))
		r.URL, _ = url.Parse("/verify" + q)
		if rec := serve(h, r); rec.Code != http.StatusInternalServerError || rec.Header().Get(HeaderUser) != "" {
			t.Errorf("%s: status %d, want 500 and no identity", q, rec.Code)
		}
	}
}

// /verify takes the plugin's header-name settings; and a group carrying the
// separator (an LDAP DN) never splits into groups the user is not in.
func TestVerifyHeaderSettingsAndSeparatorGroups(t *testing.T) {
	h := newHandler(t, nil)
	c := claims()
	c.Groups = []string{"dev", "x,admins", "cn=a;dc=b"}
	r := forwarded(withCookie(sign(t, c)))
	r.URL, _ = url.Parse("/verify?userHeader=Remote-User&groupsHeader=X-Groups&subjectHeader=X-Sub")
	rec := serve(h, r)
	if rec.Code != 200 || rec.Header().Get("Remote-User") != "alice" || rec.Header().Get("X-Groups") != "dev,cn=a;dc=b" || rec.Header().Get("X-Sub") != "sub-1" {
		t.Fatalf("headers %v", rec.Header())
	}
	if rec.Header().Get(HeaderUser) != "" || rec.Header().Get(HeaderEmail) != "" {
		t.Errorf("default header names sent although the route names its own: %v", rec.Header())
	}
	r = forwarded(withCookie(sign(t, c)))
	if rec := serve(h, r); rec.Header().Get(HeaderGroups) != "dev,cn=a;dc=b" {
		t.Errorf("default groups header = %q, want dev,cn=a;dc=b", rec.Header().Get(HeaderGroups))
	}
}

func TestVerifyReadsHostPrefixedCookie(t *testing.T) {
	h := newHandler(t, nil)
	r := forwarded(func(r *http.Request) { r.Header.Set("Cookie", "__Host-edgepass_session="+sign(t, claims())) })
	if rec := serve(h, r); rec.Code != 200 || rec.Header().Get(HeaderUser) != "alice" {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}
}
