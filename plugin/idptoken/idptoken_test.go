package idptoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

const (
	testIssuer = "https://idp.example.com"
	testAud    = "machine-api"
)

var now = time.Unix(1_700_000_000, 0)

type signer struct {
	kid string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

// One value per declaration (yaegi runs these tests too, and mishandles
// blank identifiers in package-level multi-value declarations).
var (
	rsaKey       = mustRSA()
	ecKey        = mustEC(elliptic.P256())
	ec384Key     = mustEC(elliptic.P384())
	edKey        = ed25519.NewKeyFromSeed([]byte("idptoken-test-ed25519-key-seed!!"))
	otherRSA     = mustRSA()
	rsaSigner    = signer{kid: "rsa1", rsa: rsaKey}
	ecSigner     = signer{kid: "ec1", ec: ecKey}
	ec384Signer  = signer{kid: "ec384", ec: ec384Key}
	edSigner     = signer{kid: "ed1", ed: edKey}
	attackerRSA  = signer{kid: "rsa1", rsa: otherRSA}
	publishedSet = jwksOf(
		map[string]any{"kty": "RSA", "kid": "rsa1", "use": "sig", "n": b64.EncodeToString(rsaKey.N.Bytes()), "e": "AQAB"},
		map[string]any{"kty": "EC", "kid": "ec1", "crv": "P-256", "x": pad(ecKey.X, 32), "y": pad(ecKey.Y, 32), "alg": "ES256"},
		map[string]any{"kty": "EC", "kid": "ec384", "crv": "P-384", "x": pad(ec384Key.X, 48), "y": pad(ec384Key.Y, 48)},
		map[string]any{"kty": "OKP", "kid": "ed1", "crv": "Ed25519", "x": b64.EncodeToString(edKey.Public().(ed25519.PublicKey))},
		map[string]any{"kty": "RSA", "kid": "enc1", "use": "enc", "n": b64.EncodeToString(otherRSA.N.Bytes()), "e": "AQAB"},
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
	)
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func pad(n *big.Int, size int) string {
	b := n.Bytes()
	out := make([]byte, size)
	copy(out[size-len(b):], b)
	return b64.EncodeToString(out)
}

func jwksOf(keys ...map[string]any) []byte {
	data, _ := json.Marshal(map[string]any{"keys": keys})
	return data
}

func claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{"iss": testIssuer, "aud": testAud, "sub": "robot", "client_id": "robot", "iat": now.Unix() - 10,
		"exp": now.Unix() + 300, "jti": "jti-1", "groups": []string{"robots"}}
	if mod != nil {
		mod(c)
	}
	return c
}

func (s signer) sign(t testing.TB, alg string, hdr map[string]any, c map[string]any) string {
	t.Helper()
	if hdr == nil {
		hdr = map[string]any{"alg": alg, "typ": "at+jwt", "kid": s.kid}
	}
	h, _ := json.Marshal(hdr)
	p, _ := json.Marshal(c)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.rsa, crypto.SHA256, sum[:])
	case "PS256":
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPSS(rand.Reader, s.rsa, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256", "ES384":
		var digest []byte
		size := 32
		if alg == "ES384" {
			sum := sha512.Sum384([]byte(input))
			digest, size = sum[:], 48
		} else {
			sum := sha256.Sum256([]byte(input))
			digest = sum[:]
		}
		r, ss, e := ecdsa.Sign(rand.Reader, s.ec, digest)
		err = e
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		ss.FillBytes(sig[size:])
	case "EdDSA":
		sig = ed25519.Sign(s.ed, []byte(input))
	case "HS256":
		// Attack: HMAC keyed with the RSA public key's bytes.
		m := hmac.New(sha256.New, rsaKey.N.Bytes())
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
		return input + "."
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func keys(t testing.TB) *Keys {
	t.Helper()
	ks, err := ParseJWKS(publishedSet)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func opts() Options {
	return Options{Issuer: testIssuer, Audiences: []string{"other-api", testAud}, Skew: 30 * time.Second}
}

func TestParseJWKSTakesSigningKeysOnly(t *testing.T) {
	if n := keys(t).Len(); n != 4 {
		t.Fatalf("%d keys, want RSA, two EC and Ed25519 (no encryption or HMAC key)", n)
	}
	short, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := ParseJWKS(jwksOf(map[string]any{"kty": "RSA", "kid": "s", "n": b64.EncodeToString(short.N.Bytes()), "e": "AQAB"})); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("a 1024-bit RSA key was taken: %v", err)
	}
	offCurve := jwksOf(map[string]any{"kty": "EC", "kid": "bad", "crv": "P-256", "x": pad(big.NewInt(1), 32), "y": pad(big.NewInt(2), 32)})
	if _, err := ParseJWKS(offCurve); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("a point off the curve was taken: %v", err)
	}
}

// The table of access tokens an edge must accept or refuse.
func TestVerifyAccessTokens(t *testing.T) {
	ks := keys(t)
	good := claims(nil)
	for _, tc := range []struct {
		name string
		raw  string
		want error // nil = accepted
	}{
		{"RS256", rsaSigner.sign(t, "RS256", nil, good), nil},
		{"PS256", rsaSigner.sign(t, "PS256", nil, good), nil},
		{"ES256", ecSigner.sign(t, "ES256", nil, good), nil},
		{"ES384", ec384Signer.sign(t, "ES384", nil, good), nil},
		{"EdDSA", edSigner.sign(t, "EdDSA", nil, good), nil},
		{"typ JWT", rsaSigner.sign(t, "RS256", map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rsa1"}, good), nil},
		{"aud array", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { c["aud"] = []string{"x", testAud} })), nil},
		// Attacks and mistakes.
		{"forged signature", attackerRSA.sign(t, "RS256", nil, good), ErrSignature},
		{"alg none", rsaSigner.sign(t, "none", map[string]any{"alg": "none", "kid": "rsa1"}, good), ErrAlgorithm},
		{"HS256 with the RSA key", rsaSigner.sign(t, "HS256", map[string]any{"alg": "HS256", "kid": "rsa1"}, good), ErrAlgorithm},
		{"RS256 naming the EC key", rsaSigner.sign(t, "RS256", map[string]any{"alg": "RS256", "kid": "ec1"}, good), ErrUnknownKey},
		{"ES384 with a P-256 key", ecSigner.sign(t, "ES256", map[string]any{"alg": "ES384", "kid": "ec1"}, good), ErrUnknownKey},
		{"ES256 with a P-384 key", ec384Signer.sign(t, "ES384", map[string]any{"alg": "ES256", "kid": "ec384"}, good), ErrAlgorithm},
		{"unknown kid", rsaSigner.sign(t, "RS256", map[string]any{"alg": "RS256", "kid": "nope"}, good), ErrUnknownKey},
		{"encryption key", rsaSigner.sign(t, "RS256", map[string]any{"alg": "RS256", "kid": "enc1"}, good), ErrUnknownKey},
		{"expired", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { c["exp"] = now.Unix() - 31 })), ErrExpired},
		{"not yet valid", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { c["nbf"] = now.Unix() + 120 })), ErrNotYetValid},
		{"iat in the future", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { c["iat"] = now.Unix() + 120 })), ErrNotYetValid},
		{"wrong issuer", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), ErrIssuer},
		{"wrong audience", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { c["aud"] = "edgepass" })), ErrAudience},
		{"no audience", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { delete(c, "aud") })), ErrAudience},
		{"no exp", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { delete(c, "exp") })), ErrMalformed},
		{"no sub", rsaSigner.sign(t, "RS256", nil, claims(func(c map[string]any) { delete(c, "sub") })), ErrMalformed},
		{"logout token", rsaSigner.sign(t, "RS256", map[string]any{"alg": "RS256", "typ": "logout+jwt", "kid": "rsa1"}, good), ErrMalformed},
		{"crit header", rsaSigner.sign(t, "RS256", map[string]any{"alg": "RS256", "kid": "rsa1", "crit": []string{"b64"}}, good), ErrMalformed},
		{"garbage", "a.b.c", ErrMalformed},
		{"oversized", strings.Repeat("a", MaxTokenSize+1), ErrMalformed},
	} {
		c, err := Verify(tc.raw, ks, opts(), now)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want == nil && c["sub"] != "robot":
			t.Errorf("%s: claims %v", tc.name, c)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A duplicated claim (parser differential) is refused.
	h, _ := json.Marshal(map[string]any{"alg": "EdDSA", "kid": "ed1"})
	p := []byte(`{"iss":"` + testIssuer + `","aud":"` + testAud + `","sub":"robot","sub":"admin","iat":1699999990,"exp":1700000300}`)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	dup := input + "." + b64.EncodeToString(ed25519.Sign(edKey, []byte(input)))
	if _, err := Verify(dup, ks, opts(), now); !errors.Is(err, ErrMalformed) {
		t.Fatalf("duplicate sub: %v", err)
	}
	// Without a kid, one candidate key of the right type is used.
	noKid := edSigner.sign(t, "EdDSA", map[string]any{"alg": "EdDSA"}, good)
	if _, err := Verify(noKid, ks, opts(), now); err != nil {
		t.Fatalf("no kid, one Ed25519 key: %v", err)
	}
	// The options must name an issuer and an audience.
	if _, err := Verify(rsaSigner.sign(t, "RS256", nil, good), ks, Options{Issuer: testIssuer}, now); err == nil {
		t.Fatal("verified without an audience to check")
	}
}

func TestIdentityMapsLikeALogin(t *testing.T) {
	c := map[string]any{
		"sub": "u-1", "iss": testIssuer, "aud": []any{"a", "b"}, "jti": "j", "iat": json.Number("10"), "exp": json.Number("20"),
		"email": "alice@example.com", "email_verified": false, "name": "Alice",
		"groups":       []any{"staff", "team-a", "staff", 7, ""},
		"realm_access": map[string]any{"roles": []any{"team-b", "other"}},
		"urn:roles":    map[string]any{"team-z": map[string]any{}, "team-c": true},
		"upn":          "alice@corp",
	}
	m := &Mapping{
		Groups:  []ClaimPath{{Raw: "groups", Segs: []string{"groups"}, Literal: true}, DottedPath("realm_access.roles"), {Raw: `["urn:roles"].keys()`, Segs: []string{"urn:roles"}, Keys: true}},
		Users:   []ClaimPath{DottedPath("preferred_username"), DottedPath("email"), DottedPath("upn")},
		Include: []string{"staff", "team-*"},
	}
	id := m.Identity(c)
	if strings.Join(id.Groups, ",") != "staff,team-a,team-b,team-c,team-z" {
		t.Errorf("groups %v", id.Groups)
	}
	// email_verified false: no email, and email does not name the user.
	if id.Email != "" || id.User != "alice@corp" || id.Name != "Alice" || id.Subject != "u-1" || id.ID != "j" || id.IssuedAt != 10 || id.Expiry != 20 {
		t.Errorf("identity %+v", id)
	}
}
