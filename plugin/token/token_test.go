package token

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testNow = time.Unix(1_700_000_000, 0)

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

func testKeys() (ed25519.PrivateKey, *KeySet) {
	priv := testKey(1)
	return priv, NewKeySet(Key{ID: "k1", Public: priv.Public().(ed25519.PublicKey)})
}

func testVerifier() *Verifier {
	return &Verifier{Issuer: "https://auth.example.com", Audience: "edgepass", Skew: 30 * time.Second}
}

func testClaims() *Claims {
	return &Claims{
		Issuer:            "https://auth.example.com",
		Audience:          Audience{"edgepass"},
		Subject:           "user-1",
		SessionID:         "c2Vzc2lvbi1pZC0wMTIzNDU2",
		IssuedAt:          testNow.Unix() - 60,
		Expiry:            testNow.Unix() + 3600,
		Email:             "alice@example.com",
		Name:              "Alice",
		PreferredUsername: "alice",
		Groups:            []string{"admins", "dev"},
	}
}

func mustSign(t testing.TB, c *Claims, kid string, priv ed25519.PrivateKey) string {
	t.Helper()
	raw, err := Sign(c, kid, priv)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return raw
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// forge builds a token from raw JSON header and payload, signed with priv over the
// exact bytes (so only the checks after the signature can refuse it).
func forge(header, payload string, priv ed25519.PrivateKey) string {
	input := enc(header) + "." + enc(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
}

const goodHeader = `{"alg":"EdDSA","typ":"JWT","kid":"k1"}`

func goodPayload(extra string) string {
	return `{"iss":"https://auth.example.com","aud":"edgepass","sub":"user-1","sid":"s1","iat":1699999940,"exp":1700003600` + extra + `}`
}

func TestSignVerifyRoundTrip(t *testing.T) {
	priv, keys := testKeys()
	c := testClaims()
	raw := mustSign(t, c, "k1", priv)
	got, err := testVerifier().Verify(raw, keys, testNow)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("claims differ:\n got %+v\nwant %+v", got, c)
	}
}

func TestVerifyAcceptsAudienceArray(t *testing.T) {
	priv, keys := testKeys()
	raw := forge(goodHeader, strings.Replace(goodPayload(""), `"aud":"edgepass"`, `"aud":["other","edgepass"]`, 1), priv)
	c, err := testVerifier().Verify(raw, keys, testNow)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(c.Audience, Audience{"other", "edgepass"}) {
		t.Fatalf("aud = %v", c.Audience)
	}
}

func TestVerifyAllowsClockSkew(t *testing.T) {
	priv, keys := testKeys()
	tests := []struct {
		name string
		edit func(c *Claims)
	}{
		{"expired within skew", func(c *Claims) { c.Expiry = testNow.Unix() - 10 }},
		{"iat ahead within skew", func(c *Claims) { c.IssuedAt = testNow.Unix() + 20 }},
		{"nbf ahead within skew", func(c *Claims) { c.NotBefore = testNow.Unix() + 20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClaims()
			tt.edit(c)
			if _, err := testVerifier().Verify(mustSign(t, c, "k1", priv), keys, testNow); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func assertRefused(t *testing.T, raw string, keys *KeySet, want error) {
	t.Helper()
	c, err := testVerifier().Verify(raw, keys, testNow)
	if err == nil {
		t.Fatalf("Verify accepted the token: %+v", c)
	}
	if c != nil {
		t.Fatalf("Verify returned claims with an error")
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v, want %v", err, want)
	}
}

// Attack: "alg":"none" with an empty signature, accepted by naive JWT libraries.
func TestVerifyRejectsAlgNone(t *testing.T) {
	_, keys := testKeys()
	for _, alg := range []string{"none", "None", "NONE", ""} {
		raw := enc(`{"alg":"`+alg+`","typ":"JWT","kid":"k1"}`) + "." + enc(goodPayload("")) + "."
		assertRefusedAny(t, raw, keys, ErrAlgorithm, ErrMalformed)
		raw += "AAAA"
		assertRefused(t, raw, keys, ErrAlgorithm)
	}
}

func assertRefusedAny(t *testing.T, raw string, keys *KeySet, want ...error) {
	t.Helper()
	_, err := testVerifier().Verify(raw, keys, testNow)
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("Verify error = %v, want one of %v", err, want)
}

// Attack: key confusion — HS256 with the public key bytes as the HMAC secret.
func TestVerifyRejectsHMAC(t *testing.T) {
	priv, keys := testKeys()
	for _, alg := range []string{"HS256", "HS512", "RS256", "ES256", "EdDSA256", "eddsa"} {
		input := enc(`{"alg":"`+alg+`","typ":"JWT","kid":"k1"}`) + "." + enc(goodPayload(""))
		mac := hmac.New(sha256.New, priv.Public().(ed25519.PublicKey))
		mac.Write([]byte(input))
		assertRefused(t, input+"."+base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), keys, ErrAlgorithm)
	}
}

// Attack: a token signed by a key the edge does not know (attacker's own key).
func TestVerifyRejectsUnknownKid(t *testing.T) {
	_, keys := testKeys()
	attacker := testKey(9)
	assertRefused(t, forge(`{"alg":"EdDSA","kid":"k2"}`, goodPayload(""), attacker), keys, ErrUnknownKey)
	assertRefused(t, forge(goodHeader, goodPayload(""), testKey(1)), nil, ErrUnknownKey)
}

// Attack: a known kid but the attacker's signature.
func TestVerifyRejectsSignatureFromOtherKey(t *testing.T) {
	_, keys := testKeys()
	assertRefused(t, forge(goodHeader, goodPayload(""), testKey(9)), keys, ErrSignature)
}

// Attack: edit the claims (add a group) and keep the original signature.
func TestVerifyRejectsTamperedPayload(t *testing.T) {
	priv, keys := testKeys()
	raw := mustSign(t, testClaims(), "k1", priv)
	parts := strings.Split(raw, ".")
	c := testClaims()
	c.Groups = append(c.Groups, "superusers")
	other := strings.Split(mustSign(t, c, "k1", testKey(7)), ".")
	assertRefused(t, parts[0]+"."+other[1]+"."+parts[2], keys, ErrSignature)
	// Flip one signature bit.
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[10] ^= 1
	assertRefused(t, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig), keys, ErrSignature)
}

// Attack: replaying a token past its exp (+ skew).
func TestVerifyRejectsExpired(t *testing.T) {
	priv, keys := testKeys()
	c := testClaims()
	c.Expiry = testNow.Unix() - 31
	assertRefused(t, mustSign(t, c, "k1", priv), keys, ErrExpired)
	c.Expiry = testNow.Unix() - 30 // exactly at exp+skew: refused
	assertRefused(t, mustSign(t, c, "k1", priv), keys, ErrExpired)
}

// Attack: a token minted for another service (or issuer) sharing the key.
func TestVerifyRejectsWrongAudience(t *testing.T) {
	priv, keys := testKeys()
	for _, aud := range []Audience{{"other"}, {"other", "EDGEPASS"}, nil} {
		c := testClaims()
		c.Audience = aud
		assertRefused(t, mustSign(t, c, "k1", priv), keys, ErrAudience)
	}
	c := testClaims()
	c.Issuer = "https://evil.example.com"
	assertRefused(t, mustSign(t, c, "k1", priv), keys, ErrIssuer)
}

// Attack: a huge cookie meant to cost CPU/memory in decoding; refused by size first.
func TestVerifyRejectsOversized(t *testing.T) {
	_, keys := testKeys()
	assertRefused(t, strings.Repeat("A", MaxTokenSize+1), keys, ErrTooLarge)
	assertRefused(t, strings.Repeat("!", MaxTokenSize+1), keys, ErrTooLarge) // not even base64
	priv, _ := testKeys()
	c := testClaims()
	for i := 0; i < 400; i++ {
		c.Groups = append(c.Groups, "group-with-a-long-name")
	}
	if _, err := Sign(c, "k1", priv); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Sign of an oversized token: err = %v, want ErrTooLarge", err)
	}
}

// Attack: token becomes valid later, or claims to be issued in the future.
func TestVerifyRejectsNotYetValid(t *testing.T) {
	priv, keys := testKeys()
	c := testClaims()
	c.NotBefore = testNow.Unix() + 31
	assertRefused(t, mustSign(t, c, "k1", priv), keys, ErrNotYetValid)
	c = testClaims()
	c.IssuedAt = testNow.Unix() + 31
	assertRefused(t, mustSign(t, c, "k1", priv), keys, ErrNotYetValid)
}

// Attacks on the parser: shapes a strict verifier must refuse.
func TestVerifyRejectsMalformed(t *testing.T) {
	priv, keys := testKeys()
	good := mustSign(t, testClaims(), "k1", priv)
	p := strings.Split(good, ".")
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"Empty", "", ErrMalformed},
		{"TwoSegments", p[0] + "." + p[1], ErrMalformed},
		{"FourSegments", good + ".AAAA", ErrMalformed},
		{"EmptySignature", p[0] + "." + p[1] + ".", ErrMalformed},
		{"EmptyHeader", "." + p[1] + "." + p[2], ErrMalformed},
		{"StdBase64Chars", p[0] + "+/." + p[1] + "." + p[2], ErrMalformed},
		{"PaddedHeader", p[0] + "==." + p[1] + "." + p[2], ErrMalformed},
		{"NewlineInSignature", p[0] + "." + p[1] + "." + p[2][:10] + "\n" + p[2][10:], ErrMalformed},
		{"NonCanonicalSignatureBits", p[0] + "." + p[1] + "." + p[2][:len(p[2])-1] + nonCanonical(p[2][len(p[2])-1]), ErrMalformed},
		{"TruncatedSignature", p[0] + "." + p[1] + "." + p[2][:40], ErrMalformed},
		{"HeaderNotJSON", enc("not json") + "." + p[1] + "." + p[2], ErrMalformed},
		{"HeaderArray", enc(`["EdDSA"]`) + "." + p[1] + "." + p[2], ErrMalformed},
		{"HeaderDuplicateAlg", forge(`{"alg":"EdDSA","alg":"none","kid":"k1"}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderDuplicateKid", forge(`{"alg":"EdDSA","kid":"k1","kid":"k2"}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderCrit", forge(`{"alg":"EdDSA","kid":"k1","crit":["exp"]}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderJKU", forge(`{"alg":"EdDSA","kid":"k1","jku":"https://evil/jwks"}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderEmbeddedJWK", forge(`{"alg":"EdDSA","kid":"k1","jwk":{"kty":"OKP"}}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderB64False", forge(`{"alg":"EdDSA","kid":"k1","b64":false}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderTypNotJWT", forge(`{"alg":"EdDSA","kid":"k1","typ":"JWE"}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderMissingKid", forge(`{"alg":"EdDSA"}`, goodPayload(""), priv), ErrMalformed},
		{"HeaderTrailingData", forge(goodHeader+`{}`, goodPayload(""), priv), ErrMalformed},
		{"PayloadNotJSON", forge(goodHeader, `nope`, priv), ErrMalformed},
		{"PayloadArray", forge(goodHeader, `[1,2]`, priv), ErrMalformed},
		{"PayloadDuplicateSub", forge(goodHeader, goodPayload(`,"sub":"admin"`), priv), ErrMalformed},
		{"PayloadDuplicateExp", forge(goodHeader, goodPayload(`,"exp":9999999999`), priv), ErrMalformed},
		{"PayloadExpString", forge(goodHeader, `{"aud":"edgepass","sub":"u","iat":1699999940,"exp":"1700003600"}`, priv), ErrMalformed},
		{"PayloadAudNumber", forge(goodHeader, `{"aud":7,"sub":"u","iat":1699999940,"exp":1700003600}`, priv), ErrMalformed},
		{"PayloadAudMixedArray", forge(goodHeader, `{"aud":["edgepass",7],"sub":"u","iat":1699999940,"exp":1700003600}`, priv), ErrMalformed},
		{"PayloadMissingExp", forge(goodHeader, `{"iss":"https://auth.example.com","aud":"edgepass","sub":"u","iat":1699999940}`, priv), ErrMalformed},
		{"PayloadMissingIat", forge(goodHeader, `{"iss":"https://auth.example.com","aud":"edgepass","sub":"u","exp":1700003600}`, priv), ErrMalformed},
		{"PayloadMissingSub", forge(goodHeader, `{"iss":"https://auth.example.com","aud":"edgepass","iat":1699999940,"exp":1700003600}`, priv), ErrMalformed},
		{"PayloadGroupsNotStrings", forge(goodHeader, goodPayload(`,"groups":[1]`), priv), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertRefused(t, tt.raw, keys, tt.want) })
	}
}

// nonCanonical returns a base64url character that decodes to the same bytes as c
// in a final 2-byte group but with non-zero unused bits.
func nonCanonical(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i|1])
}

func TestVerifyErrorsNeverEchoTheToken(t *testing.T) {
	_, keys := testKeys()
	secret := enc(`{"alg":"EdDSA","kid":"k1"}`) + "." + enc(`{"sub":"secret-subject"}`) + ".c2VjcmV0"
	_, err := testVerifier().Verify(secret, keys, testNow)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks token content: %v", err)
	}
}

func TestSubjectKey(t *testing.T) {
	// sha256("user-1") in base64url without padding.
	sum := sha256.Sum256([]byte("user-1"))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := SubjectKey("user-1"); got != want {
		t.Fatalf("SubjectKey = %q, want %q", got, want)
	}
	if strings.ContainsAny(SubjectKey("a.b*>c"), ".*> =+/") {
		t.Fatal("SubjectKey is not NATS-subject safe")
	}
	if SubjectKey("a") == SubjectKey("b") {
		t.Fatal("distinct subjects share a key")
	}
}

func TestSignRefusesBadInput(t *testing.T) {
	priv, _ := testKeys()
	if _, err := Sign(testClaims(), "k1", priv[:10]); err == nil {
		t.Fatal("short private key accepted")
	}
	if _, err := Sign(testClaims(), "", priv); err == nil {
		t.Fatal("empty kid accepted")
	}
	if _, err := Sign(nil, "k1", priv); err == nil {
		t.Fatal("nil claims accepted")
	}
}

func TestAudienceJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Audience
		bad  bool
	}{
		{`"edgepass"`, Audience{"edgepass"}, false},
		{`["a","b"]`, Audience{"a", "b"}, false},
		{`[]`, Audience{}, false},
		{`7`, nil, true},
		{`["a",1]`, nil, true},
	}
	for _, tt := range tests {
		var a Audience
		err := a.UnmarshalJSON([]byte(tt.in))
		if (err != nil) != tt.bad {
			t.Fatalf("%s: err = %v", tt.in, err)
		}
		if !tt.bad && !reflect.DeepEqual(a, tt.want) {
			t.Fatalf("%s: got %v", tt.in, a)
		}
	}
	b, _ := Audience{"edgepass"}.MarshalJSON()
	if string(b) != `"edgepass"` {
		t.Fatalf("single audience marshals as %s", b)
	}
	b, _ = Audience{"a", "b"}.MarshalJSON()
	if string(b) != `["a","b"]` {
		t.Fatalf("two audiences marshal as %s", b)
	}
}

func FuzzVerify(f *testing.F) {
	priv, keys := testKeys()
	good := mustSign(f, testClaims(), "k1", priv)
	f.Add(good)
	f.Add(forge(goodHeader, goodPayload(`,"groups":["a","b"],"nbf":1699999000`), priv))
	f.Add(forge(goodHeader, `{"aud":["x","edgepass"],"iss":"https://auth.example.com","sub":"u","iat":1,"exp":1700000100}`, priv))
	f.Add(forge(`{"alg":"EdDSA","kid":"k1","kid":"k1"}`, goodPayload(""), priv))
	f.Add(enc(`{"alg":"none"}`) + "." + enc(goodPayload("")) + ".")
	f.Add("a.b.c")
	f.Add("..")
	f.Add(good[:len(good)-5])
	f.Add(strings.Repeat("A", MaxTokenSize+1))
	v := testVerifier()
	sentinels := []error{ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(raw, keys, testNow)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if len(raw) > MaxTokenSize {
			t.Fatal("oversized token verified")
		}
		again, err := v.Verify(raw, keys, testNow)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("token verified once but not identically again: %v", err)
		}
	})
}

func TestClaimsUser(t *testing.T) {
	for _, tt := range []struct {
		c    Claims
		want string
	}{
		{Claims{PreferredUsername: "alice", Email: "a@x", Subject: "s"}, "alice"},
		{Claims{Email: "a@x", Subject: "s"}, "a@x"},
		{Claims{Subject: "s"}, "s"},
	} {
		if got := tt.c.User(); got != tt.want {
			t.Errorf("User() of %+v = %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestBearer(t *testing.T) {
	for v, want := range map[string]string{
		"Bearer abc":   "abc",
		"bearer  abc ": "abc",
		"BEARER abc":   "abc",
		"Basic abc":    "",
		"Bearer":       "",
		"Bearer ":      "",
		"Bearerabc":    "",
		"":             "",
	} {
		if got := Bearer(v); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", v, got, want)
		}
	}
}
