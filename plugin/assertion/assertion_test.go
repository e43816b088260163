package assertion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

const (
	testIssuer = "https://auth.example.com"
	testAud    = "https://billing.example.com"
)

var now = time.Unix(1_700_000_000, 0)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pub(priv ed25519.PrivateKey) ed25519.PublicKey { return priv.Public().(ed25519.PublicKey) }

func claims() *Claims {
	return &Claims{
		Issuer: testIssuer, Audience: testAud, Subject: "sub-alice", User: "alice", Email: "alice@example.com",
		Groups: []string{"staff"}, IssuedAt: now.Unix(), Expiry: now.Unix() + DefaultLifetime,
		SessionHash: HashSessionID("session-id-of-alice-0001"), Kind: KindSession,
	}
}

func opts() Options { return Options{Issuer: testIssuer, Audience: testAud} }

// jws builds a compact JWS from arbitrary header and payload JSON, signed by priv
// (nil: an empty signature).
// header is a JOSE header, for hand-made (forged) assertions.
type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

func jws(t testing.TB, hdr, payload any, priv ed25519.PrivateKey) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := payload.([]byte)
	if !ok {
		if p, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	if priv == nil {
		return input + "."
	}
	return input + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(input)))
}

func TestAssertionRoundTrip(t *testing.T) {
	priv := newKey(t)
	raw, err := Sign(claims(), priv)
	if err != nil {
		t.Fatal(err)
	}
	keys := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)})
	c, err := Verify(raw, keys, opts(), now.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "sub-alice" || c.User != "alice" || c.Audience != testAud || len(c.Groups) != 1 || c.Kind != KindSession {
		t.Fatalf("claims %+v", c)
	}
	if c.SessionHash == "" || strings.Contains(raw, "session-id-of-alice") {
		t.Fatal("the session id must travel hashed only")
	}
	u, err := Unverified(raw)
	if err != nil || u.Subject != c.Subject {
		t.Fatalf("Unverified: %v %+v", err, u)
	}
}

// A backend must refuse an assertion signed by anyone but the daemon's assertion keys.
func TestAssertionRejectsForgedSignature(t *testing.T) {
	daemon, attacker := newKey(t), newKey(t)
	keys := NewKeys(Key{ID: KeyID(pub(daemon)), Public: pub(daemon)})
	// Signed by another key that claims the daemon's kid.
	forged := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KeyID(pub(daemon))}, claims(), attacker)
	if _, err := Verify(forged, keys, opts(), now); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged signature: %v", err)
	}
	// A genuine assertion with one claim changed.
	raw, _ := Sign(claims(), daemon)
	parts := strings.Split(raw, ".")
	c := claims()
	c.Groups = []string{"admins"}
	p, _ := json.Marshal(c)
	tampered := parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
	if _, err := Verify(tampered, keys, opts(), now); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered claims: %v", err)
	}
}

// An assertion must never double as a session (nor a session token as an
// assertion): the session audience is refused everywhere.
func TestAssertionRejectsSessionAudience(t *testing.T) {
	priv := newKey(t)
	keys := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)})
	for _, aud := range []string{SessionAudience, ServiceAudience} {
		c := claims()
		c.Audience = aud
		if _, err := Sign(c, priv); !errors.Is(err, ErrConfig) {
			t.Errorf("Sign with aud %q: %v, want ErrConfig", aud, err)
		}
		// A verifier configured with the session audience is refused outright.
		if _, err := Verify("a.b.c", keys, Options{Issuer: testIssuer, Audience: aud}, now); !errors.Is(err, ErrConfig) {
			t.Errorf("Verify for aud %q: %v, want ErrConfig", aud, err)
		}
		if _, err := NewVerifier(VerifierOptions{JWKSURL: "http://x/jwks", Issuer: testIssuer, Audience: aud}); !errors.Is(err, ErrConfig) {
			t.Errorf("NewVerifier for aud %q: %v, want ErrConfig", aud, err)
		}
		// Hand-made with the session audience and the right key: refused by aud.
		forged := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KeyID(pub(priv))}, c, priv)
		if _, err := Verify(forged, keys, opts(), now); !errors.Is(err, ErrAudience) {
			t.Errorf("assertion with aud %q: %v, want ErrAudience", aud, err)
		}
	}
	// A real session token, signed by a session key in the same JWKS, is not an assertion.
	sessionKey := newKey(t)
	sess, err := token.Sign(&token.Claims{Issuer: testIssuer, Audience: token.Audience{testAud}, Subject: "sub-alice",
		SessionID: "session-id-of-alice-0001", IssuedAt: now.Unix(), Expiry: now.Unix() + 60}, "sessionkid", sessionKey)
	if err != nil {
		t.Fatal(err)
	}
	both := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)}, Key{ID: KeyID(pub(sessionKey)), Public: pub(sessionKey)})
	if _, err := Verify(sess, both, opts(), now); !errors.Is(err, ErrType) {
		t.Fatalf("session token as assertion: %v, want ErrType", err)
	}
}

// An assertion minted for one backend must not open another.
func TestAssertionRejectsWrongAudience(t *testing.T) {
	priv := newKey(t)
	keys := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)})
	raw, _ := Sign(claims(), priv)
	o := opts()
	o.Audience = "https://reports.example.com"
	if _, err := Verify(raw, keys, o, now); !errors.Is(err, ErrAudience) {
		t.Fatalf("other backend: %v", err)
	}
	// aud as an array naming both: refused (one audience only).
	c := map[string]any{"iss": testIssuer, "aud": []string{testAud, "https://reports.example.com"}, "sub": "x", "iat": now.Unix(), "exp": now.Unix() + 60}
	arr := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KeyID(pub(priv))}, c, priv)
	if _, err := Verify(arr, keys, opts(), now); !errors.Is(err, ErrAudience) {
		t.Fatalf("aud array: %v", err)
	}
	o = opts()
	o.Issuer = "https://other-daemon.example.com"
	if _, err := Verify(raw, keys, o, now); !errors.Is(err, ErrIssuer) {
		t.Fatalf("other issuer: %v", err)
	}
}

// A captured assertion stops working at its exp (and one claiming a long
// life was not minted by the daemon).
func TestAssertionRejectsExpiredAndLongLived(t *testing.T) {
	priv := newKey(t)
	keys := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)})
	raw, _ := Sign(claims(), priv)
	if _, err := Verify(raw, keys, opts(), now.Add(DefaultLifetime*time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp: %v", err)
	}
	o := opts()
	o.Skew = time.Hour // clamped to a minute
	if _, err := Verify(raw, keys, o, now.Add((DefaultLifetime+61)*time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("skew must be clamped: %v", err)
	}
	if _, err := Verify(raw, keys, opts(), now.Add(-10*time.Second)); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("iat in the future: %v", err)
	}
	c := claims()
	c.Expiry = c.IssuedAt + MaxLifetime + 1
	if _, err := Sign(c, priv); err == nil {
		t.Fatal("Sign minted a long-lived assertion")
	}
	long := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KeyID(pub(priv))}, c, priv)
	if _, err := Verify(long, keys, opts(), now); !errors.Is(err, ErrLifetime) {
		t.Fatalf("long-lived: %v", err)
	}
}

// alg=none (and any algorithm but EdDSA) must never verify.
func TestAssertionRejectsAlgNone(t *testing.T) {
	priv := newKey(t)
	keys := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)})
	for _, alg := range []string{"none", "None", "HS256", "RS256", "ES256", ""} {
		unsigned := jws(t, header{Alg: alg, Typ: Type, Kid: KeyID(pub(priv))}, claims(), nil)
		if _, err := Verify(unsigned, keys, opts(), now); err == nil {
			t.Errorf("alg %q without signature verified", alg)
		}
		signed := jws(t, header{Alg: alg, Typ: Type, Kid: KeyID(pub(priv))}, claims(), priv)
		if _, err := Verify(signed, keys, opts(), now); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("alg %q: %v, want ErrAlgorithm", alg, err)
		}
	}
}

// A session key (kid without the assertion prefix) must not verify an
// assertion even when a backend loads the whole JWKS; session verifiers
// must skip assertion keys the same way.
func TestAssertionRejectsKidConfusion(t *testing.T) {
	sessionKey, assertKey := newKey(t), newKey(t)
	sessionKid := "k" + KeyID(pub(sessionKey))[len(KidPrefix):]
	jwks := `{"keys":[` +
		`{"kty":"OKP","crv":"Ed25519","kid":"` + sessionKid + `","x":"` + b64.EncodeToString(pub(sessionKey)) + `","alg":"EdDSA","use":"sig"},` +
		string(JWK(pub(assertKey))) + `]}`
	keys, err := ParseJWKS([]byte(jwks))
	if err != nil {
		t.Fatal(err)
	}
	if keys.Len() != 1 || !keys.Has(KeyID(pub(assertKey))) || keys.Has(sessionKid) {
		t.Fatalf("assertion keys from the JWKS: %d", keys.Len())
	}
	// An assertion-shaped token signed by the session key under its own kid.
	bySession := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: sessionKid}, claims(), sessionKey)
	if _, err := Verify(bySession, keys, opts(), now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("session kid: %v", err)
	}
	// Even if a careless backend puts every JWKS key in the set by hand.
	all := NewKeys(Key{ID: sessionKid, Public: pub(sessionKey)}, Key{ID: KeyID(pub(assertKey)), Public: pub(assertKey)})
	if all.Has(sessionKid) {
		t.Fatal("NewKeys took a key without the assertion prefix")
	}
	// The session side: token.ParseJWKS must not take the assertion key.
	ks, err := token.ParseJWKS([]byte(jwks))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ks.Lookup(KeyID(pub(assertKey))); ok || ks.Len() != 1 {
		t.Fatalf("session key set took an assertion key (%d keys)", ks.Len())
	}
	// kid naming the assertion prefix but signed by the session key.
	lying := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KeyID(pub(assertKey))}, claims(), sessionKey)
	if _, err := Verify(lying, keys, opts(), now); !errors.Is(err, ErrSignature) {
		t.Fatalf("kid of the assertion key, signed by the session key: %v", err)
	}
}

// JSON parser differentials (duplicate members, extra header members) are refused.
func TestAssertionRejectsAmbiguousJSON(t *testing.T) {
	priv := newKey(t)
	keys := NewKeys(Key{ID: KeyID(pub(priv)), Public: pub(priv)})
	dup := []byte(`{"iss":"` + testIssuer + `","aud":"` + testAud + `","sub":"bob","sub":"alice","iat":1700000000,"exp":1700000060,"groups":[]}`)
	raw := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KeyID(pub(priv))}, dup, priv)
	if _, err := Verify(raw, keys, opts(), now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("duplicate sub: %v", err)
	}
	jku := map[string]string{"alg": "EdDSA", "typ": Type, "kid": KeyID(pub(priv)), "jku": "https://evil.example/jwks"}
	raw = jws(t, jku, claims(), priv)
	if _, err := Verify(raw, keys, opts(), now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("jku header: %v", err)
	}
}

func TestVerifierFetchesRotatesAndServesMiddleware(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	var current atomic.Value
	current.Store(k1)
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		k := current.Load().(ed25519.PrivateKey)
		_, _ = w.Write([]byte(`{"keys":[` + string(JWK(pub(k))) + `]}`))
	}))
	defer srv.Close()
	clock := now
	v, err := NewVerifier(VerifierOptions{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAud, MinRefetch: time.Second, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	raw1, _ := Sign(claims(), k1)
	if _, err := v.Verify(context.Background(), raw1); err != nil {
		t.Fatal(err)
	}
	// The daemon rotates: an unknown kid fetches again (once per MinRefetch).
	current.Store(k2)
	raw2, _ := Sign(claims(), k2)
	clock = clock.Add(2 * time.Second)
	if _, err := v.Verify(context.Background(), raw2); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	// Forged kids cannot make it fetch on every request.
	before := fetches.Load()
	for i := 0; i < 20; i++ {
		forged := jws(t, header{Alg: "EdDSA", Typ: Type, Kid: KidPrefix + "forged" + string(rune('a'+i))}, claims(), k1)
		if _, err := v.Verify(context.Background(), forged); err == nil {
			t.Fatal("forged kid verified")
		}
	}
	if got := fetches.Load() - before; got > 1 {
		t.Fatalf("%d fetches for forged kids within MinRefetch", got)
	}

	// A verified assertion is remembered until its exp, never after.
	if v.nCached.Load() == 0 {
		t.Fatal("verified assertions are not cached")
	}
	saved := clock
	clock = time.Unix(claims().Expiry+10, 0)
	if _, err := v.Verify(context.Background(), raw2); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached assertion past its exp: %v", err)
	}
	clock = saved

	var seen *Claims
	h := v.Middleware("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = FromContext(r.Context())
	}))
	for _, tc := range []struct {
		name   string
		values []string
		want   int
	}{
		{"none", nil, 401}, {"garbage", []string{"x.y.z"}, 401}, {"two", []string{raw2, raw2}, 401}, {"valid", []string{raw2}, 200},
	} {
		seen = nil
		r := httptest.NewRequest("GET", "/", nil)
		r.Header[DefaultHeader] = tc.values
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want || (tc.want == 200) != (seen != nil) {
			t.Errorf("%s: %d (claims %v), want %d", tc.name, w.Code, seen != nil, tc.want)
		}
	}
}

func TestKidPrefixIsTheOneSessionVerifiersSkip(t *testing.T) {
	if KidPrefix != token.AssertionKidPrefix {
		t.Fatalf("assertion.KidPrefix %q != token.AssertionKidPrefix %q", KidPrefix, token.AssertionKidPrefix)
	}
}
