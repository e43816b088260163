package yaegi_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/mint"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

// The assertion and mint packages run under yaegi: sealing a request
// (crypto/ecdh, AES-GCM, HMAC), opening the reply, signing and verifying an
// assertion, all from interpreted code.
func TestYaegiAssertionAndMintPackages(t *testing.T) {
	selfCheck := plugin(t).evalFunc(t, `
import (
	aed25519 "crypto/ed25519"
	aerrors "errors"
	atime "time"

	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/mint"
)

func edgepassAssertionSelfCheck() string {
	d, err := mint.NewKey()
	if err != nil {
		return "mint key: " + err.Error()
	}
	kid := mint.KeyID(d.PublicKey().Bytes())
	msg, rk, err := mint.SealRequest(mint.Request{Token: "t.o.k", Audience: "app", Iat: 5}, kid, d.PublicKey().Bytes(), "s")
	if err != nil {
		return "seal: " + err.Error()
	}
	req, sk, err := mint.OpenRequest(msg, d, kid, "s")
	if err != nil {
		return "open request: " + err.Error()
	}
	if req.Token != "t.o.k" || req.Audience != "app" || req.Iat != 5 {
		return "request differs"
	}
	out, err := sk.Seal(mint.Reply{Assertion: "a.b.c", Exp: 9})
	if err != nil {
		return "seal reply: " + err.Error()
	}
	rep, err := rk.Open(out)
	if err != nil {
		return "open reply: " + err.Error()
	}
	if rep.Assertion != "a.b.c" || rep.Exp != 9 {
		return "reply differs"
	}
	if _, _, err := mint.OpenRequest(msg, d, kid, "other"); !aerrors.Is(err, mint.ErrSealed) {
		return "request opened on another subject"
	}

	seed := make([]byte, 32)
	seed[1] = 9
	priv := aed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(aed25519.PublicKey)
	now := atime.Now()
	raw, err := assertion.Sign(&assertion.Claims{Issuer: "i", Audience: "app", Subject: "s", Groups: []string{"g"},
		IssuedAt: now.Unix(), Expiry: now.Unix() + 60, Kind: assertion.KindSession}, priv)
	if err != nil {
		return "sign: " + err.Error()
	}
	keys := assertion.NewKeys(assertion.Key{ID: assertion.KeyID(pub), Public: pub})
	c, err := assertion.Verify(raw, keys, assertion.Options{Issuer: "i", Audience: "app"}, now)
	if err != nil {
		return "verify: " + err.Error()
	}
	if c.Subject != "s" || len(c.Groups) != 1 || c.Audience != "app" {
		return "claims differ"
	}
	if _, err := assertion.Verify(raw, keys, assertion.Options{Issuer: "i", Audience: "edgepass"}, now); !aerrors.Is(err, assertion.ErrConfig) {
		return "session audience accepted"
	}
	u, err := assertion.Unverified(raw)
	if err != nil || u.Expiry != c.Expiry {
		return "unverified differs"
	}
	return ""
}
`, "edgepassAssertionSelfCheck").(func() string)
	if msg := selfCheck(); msg != "" {
		t.Fatalf("under yaegi: %s", msg)
	}
}

// The middleware with assertionHeader, interpreted as Traefik runs it, on a
// real nats-server with the edge's exact permissions: it syncs the signed
// keys fact (with the mint key), asks for an assertion on its own subject
// through its own NATS client, and the backend gets one it can verify. A
// native responder plays the daemon.
func TestYaegiMiddlewareSendsAssertion(t *testing.T) {
	const (
		edgeUser = "edge"
		edgePass = "edge-password-0123456789"
		bucket   = natsedge.DefaultBucket
		aud      = "https://billing.example.com"
	)
	pub, sub := natsedge.EdgePermissions(bucket, edgeUser)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "daemon", Password: "daemon-password-0123456789"},
			{Username: edgeUser, Password: edgePass, Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: pub}, Subscribe: &server.SubjectPermission{Allow: sub}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()
	url := "nats://" + ns.Addr().(*net.TCPAddr).String()
	nc, err := nats.Connect(url, nats.UserInfo("daemon", "daemon-password-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}

	// The daemon's keys fact: the session key (the test key), the mint key.
	anchor := ed25519.NewKeyFromSeed([]byte("yaegi-assertion-test-anchor-seed"))
	mintKey, _ := mint.NewKey()
	mintKid := mint.KeyID(mintKey.PublicKey().Bytes())
	sessionKeys := token.NewKeySet(token.Key{ID: "test", Public: testPriv.Public().(ed25519.PublicKey)})
	jwks, _ := sessionKeys.MarshalJWKS()
	fact, err := edgestate.SignKeys(edgestate.KeysFact{Iat: time.Now().UnixMilli(), JWKS: jwks, MaxTokenLifetime: 86400,
		Mint: &edgestate.MintKey{Kid: mintKid, Key: base64.RawURLEncoding.EncodeToString(mintKey.PublicKey().Bytes())}}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "keys", fact); err != nil {
		t.Fatal(err)
	}

	// The daemon's minter, natively.
	assertKey := ed25519.NewKeyFromSeed([]byte("yaegi-assertion-test-signing-key"))
	asked := make(chan string, 16)
	_, err = nc.Subscribe(natsedge.AssertionWildcard(bucket), func(m *nats.Msg) {
		req, rk, err := mint.OpenRequest(m.Data, mintKey, mint.RequestKeyID(m.Data), m.Subject)
		if err != nil {
			t.Errorf("daemon: request does not open: %v", err)
			return
		}
		asked <- m.Subject
		c, err := (&token.Verifier{Issuer: "https://auth.example.com", Audience: "edgepass"}).Verify(req.Token, sessionKeys, time.Now())
		rep := mint.Reply{Reason: mint.ReasonBadToken}
		if err == nil {
			now := time.Now().Unix()
			a, serr := assertion.Sign(&assertion.Claims{Issuer: c.Issuer, Audience: req.Audience, Subject: c.Subject, User: c.User(),
				Groups: c.Groups, IssuedAt: now, Expiry: now + 60, SessionHash: assertion.HashSessionID(c.SessionID), Kind: assertion.KindSession}, assertKey)
			if serr != nil {
				t.Errorf("daemon: sign: %v", serr)
			}
			rep = mint.Reply{Assertion: a, Exp: now + 60}
		}
		out, _ := rk.Seal(rep)
		_ = m.Respond(out)
	})
	if err != nil {
		t.Fatal(err)
	}

	h, be := handler(t, func(cfg map[string]any) {
		delete(cfg, "jwks")
		cfg["trustAnchors"] = token.FormatAnchor(anchor.Public().(ed25519.PublicKey))
		cfg["assertionHeader"] = "X-Edgepass-Assertion"
		cfg["assertionAudience"] = aud
		cfg["nats"] = map[string]any{"urls": url, "user": edgeUser, "password": edgePass, "replicaID": "yaegi-assertion"}
	})
	raw := signed(t, claims())
	do := func(spoof string) int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", "edgepass_session="+raw)
		if spoof != "" {
			r.Header.Set("X-Edgepass-Assertion", spoof)
		}
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, r)
		return rw.Code
	}
	if _, err := harness.WaitEvery(50*time.Millisecond, 20*time.Second, func() (bool, string) {
		code := do("")
		return code == http.StatusTeapot, fmt.Sprintf("status %d", code)
	}); err != nil {
		t.Fatalf("the interpreted middleware never served with an assertion: %v", err)
	}
	select {
	case s := <-asked:
		if s != natsedge.AssertionSubject(bucket, edgeUser) {
			t.Fatalf("asked on %s", s)
		}
	default:
		t.Fatal("the daemon was never asked")
	}
	ap := assertKey.Public().(ed25519.PublicKey)
	check := func() {
		t.Helper()
		vals := be.header.Values("X-Edgepass-Assertion")
		if len(vals) != 1 {
			t.Fatalf("backend got %d assertions", len(vals))
		}
		c, err := assertion.Verify(vals[0], assertion.NewKeys(assertion.Key{ID: assertion.KeyID(ap), Public: ap}),
			assertion.Options{Issuer: "https://auth.example.com", Audience: aud}, time.Now())
		if err != nil || c.Subject != "sub-alice" || strings.Join(c.Groups, ",") != "dev,ops" {
			t.Fatalf("assertion: %v %+v", err, c)
		}
	}
	check()
	// Repeat requests (the fast path) and a client's forged header.
	for i := 0; i < 20; i++ {
		if do("forged") != http.StatusTeapot {
			t.Fatal("refused")
		}
		check()
	}
	if n := len(asked); n != 0 {
		t.Fatalf("%d more requests to the daemon for the same token", n)
	}
}

// IdP access-token verification (crypto/rsa, crypto/ecdsa, crypto/ed25519,
// math/big) and the claim mapping run under yaegi: tokens signed natively,
// verified by interpreted code.
func TestYaegiVerifiesIdPAccessTokens(t *testing.T) {
	check := plugin(t).evalFunc(t, `
import (
	ierrors "errors"
	istrings "strings"
	itime "time"

	"github.com/edgepass/edgepass/plugin/idptoken"
)

func edgepassIdPCheck(jwks string, good []string, forged, expired string, now int64) string {
	keys, err := idptoken.ParseJWKS([]byte(jwks))
	if err != nil {
		return "jwks: " + err.Error()
	}
	o := idptoken.Options{Issuer: "https://idp.example.com", Audiences: []string{"machine-api"}, Skew: itime.Second}
	m := &idptoken.Mapping{Groups: []idptoken.ClaimPath{idptoken.DottedPath("groups")}, Users: []idptoken.ClaimPath{idptoken.DottedPath("sub")}}
	for i, raw := range good {
		c, err := idptoken.Verify(raw, keys, o, itime.Unix(now, 0))
		if err != nil {
			return "token " + string(rune('0'+i)) + ": " + err.Error()
		}
		id := m.Identity(c)
		if id.Subject != "robot" || istrings.Join(id.Groups, ",") != "robots" || id.User != "robot" {
			return "identity differs"
		}
	}
	if _, err := idptoken.Verify(forged, keys, o, itime.Unix(now, 0)); !ierrors.Is(err, idptoken.ErrSignature) {
		return "forged token accepted"
	}
	if _, err := idptoken.Verify(expired, keys, o, itime.Unix(now, 0)); !ierrors.Is(err, idptoken.ErrExpired) {
		return "expired token accepted"
	}
	return ""
}
`, "edgepassIdPCheck").(func(string, []string, string, string, int64) string)
	jwks, good, forged, expired, now := idpTokensForYaegi(t)
	if msg := check(jwks, good, forged, expired, now); msg != "" {
		t.Fatalf("under yaegi: %s", msg)
	}
}

// idpTokensForYaegi signs an RS256, an ES256 and an EdDSA access token, a
// forged and an expired one, and returns the JWKS that verifies them.
func idpTokensForYaegi(t *testing.T) (jwks string, good []string, forged, expired string, now int64) {
	t.Helper()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	b := base64.RawURLEncoding
	fixed := func(n *big.Int) string { out := make([]byte, 32); n.FillBytes(out); return b.EncodeToString(out) }
	set, _ := json.Marshal(map[string]any{"keys": []any{
		map[string]any{"kty": "RSA", "kid": "r", "n": b.EncodeToString(rsaKey.N.Bytes()), "e": "AQAB"},
		map[string]any{"kty": "EC", "kid": "e", "crv": "P-256", "x": fixed(ecKey.X), "y": fixed(ecKey.Y)},
		map[string]any{"kty": "OKP", "kid": "d", "crv": "Ed25519", "x": b.EncodeToString(edKey.Public().(ed25519.PublicKey))},
	}})
	now = time.Now().Unix()
	sign := func(alg, kid string, exp int64, s func([]byte) []byte) string {
		h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "at+jwt", "kid": kid})
		c, _ := json.Marshal(map[string]any{"iss": "https://idp.example.com", "aud": "machine-api", "sub": "robot", "iat": now - 5, "exp": exp, "groups": []string{"robots"}})
		input := b.EncodeToString(h) + "." + b.EncodeToString(c)
		return input + "." + b.EncodeToString(s([]byte(input)))
	}
	rs := func(k *rsa.PrivateKey) func([]byte) []byte {
		return func(in []byte) []byte {
			sum := sha256.Sum256(in)
			sig, _ := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
			return sig
		}
	}
	es := func(in []byte) []byte {
		sum := sha256.Sum256(in)
		r, s, _ := ecdsa.Sign(rand.Reader, ecKey, sum[:])
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	ed := func(in []byte) []byte { return ed25519.Sign(edKey, in) }
	good = []string{sign("RS256", "r", now+300, rs(rsaKey)), sign("ES256", "e", now+300, es), sign("EdDSA", "d", now+300, ed)}
	return string(set), good, sign("RS256", "r", now+300, rs(other)), sign("RS256", "r", now-60, rs(rsaKey)), now
}
