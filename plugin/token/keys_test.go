package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestJWKSRoundTrip(t *testing.T) {
	a, b := testKey(1), testKey(2)
	ks := NewKeySet(Key{ID: "a", Public: a.Public().(ed25519.PublicKey)}, Key{ID: "b", Public: b.Public().(ed25519.PublicKey)})
	data, err := ks.MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"kty":"OKP","crv":"Ed25519","kid":"a"`) || !strings.Contains(string(data), `"alg":"EdDSA","use":"sig"`) {
		t.Fatalf("unexpected JWKS: %s", data)
	}
	back, err := ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Len() != 2 {
		t.Fatalf("Len = %d", back.Len())
	}
	for _, k := range ks.Keys() {
		pub, ok := back.Lookup(k.ID)
		if !ok || !pub.Equal(k.Public) {
			t.Fatalf("key %s lost in round trip", k.ID)
		}
	}
	// A token signed with b verifies against the parsed set.
	if _, err := testVerifier().Verify(mustSign(t, testClaims(), "b", b), back, testNow); err != nil {
		t.Fatal(err)
	}
}

func TestParseJWKSFixture(t *testing.T) {
	// The key in .traefik.yml's testData.
	ks, err := ParseJWKS([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"test","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA","use":"sig"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ks.Lookup("test"); !ok {
		t.Fatal("kid test missing")
	}
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	x := base64.RawURLEncoding.EncodeToString(testKey(1).Public().(ed25519.PublicKey))
	data := `{"keys":[
		{"kty":"RSA","kid":"rsa","n":"AQAB","e":"AQAB"},
		{"kty":"EC","crv":"P-256","kid":"ec","x":"` + x + `","y":"` + x + `"},
		{"kty":"OKP","crv":"X25519","kid":"x25519","x":"` + x + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"enc","x":"` + x + `","use":"enc"},
		{"kty":"OKP","crv":"Ed25519","kid":"wrongalg","x":"` + x + `","alg":"ES256"},
		{"kty":"OKP","crv":"Ed25519","kid":"short","x":"AAAA"},
		{"kty":"OKP","crv":"Ed25519","kid":"badb64","x":"!!!"},
		{"kty":"OKP","crv":"Ed25519","x":"` + x + `"},
		{"kty":7},
		"junk",
		{"kty":"OKP","crv":"Ed25519","kid":"good","x":"` + x + `"}
	]}`
	ks, err := ParseJWKS([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Len() != 1 {
		t.Fatalf("Len = %d, want only the good key", ks.Len())
	}
	if _, ok := ks.Lookup("good"); !ok {
		t.Fatal("good key missing")
	}
}

func TestParseJWKSRefusesUnusableSets(t *testing.T) {
	tests := []struct {
		name, data string
		want       error
	}{
		{"NotJSON", `nope`, ErrMalformed},
		{"KeysNotArray", `{"keys":{}}`, ErrMalformed},
		{"Empty", `{"keys":[]}`, ErrNoKeys},
		{"NoKeysMember", `{}`, ErrNoKeys},
		{"OnlyRSA", `{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`, ErrNoKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := ParseJWKS([]byte(tt.data))
			if ks != nil || !errors.Is(err, tt.want) {
				t.Fatalf("ParseJWKS = %v, %v; want error %v", ks, err, tt.want)
			}
		})
	}
}

func TestKeySetIsImmutable(t *testing.T) {
	pub := append(ed25519.PublicKey(nil), testKey(1).Public().(ed25519.PublicKey)...)
	ks := NewKeySet(Key{ID: "a", Public: pub}, Key{ID: "a", Public: testKey(2).Public().(ed25519.PublicKey)}, Key{ID: "", Public: pub}, Key{ID: "short", Public: pub[:5]})
	pub[0] ^= 0xff
	got, _ := ks.Lookup("a")
	if !got.Equal(testKey(1).Public().(ed25519.PublicKey)) {
		t.Fatal("KeySet shares the caller's key bytes or let a duplicate kid replace the first")
	}
	if ks.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (empty id, short key and duplicate skipped)", ks.Len())
	}
	var nilSet *KeySet
	if _, ok := nilSet.Lookup("a"); ok || nilSet.Len() != 0 {
		t.Fatal("nil KeySet knows keys")
	}
}

func TestKeySetEqual(t *testing.T) {
	pub := func(b byte) ed25519.PublicKey {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = b
		return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	}
	a := NewKeySet(Key{ID: "a", Public: pub(1)}, Key{ID: "b", Public: pub(2)})
	for _, tt := range []struct {
		name string
		o    *KeySet
		want bool
	}{
		{"same keys in another order", NewKeySet(Key{ID: "b", Public: pub(2)}, Key{ID: "a", Public: pub(1)}), true},
		{"a key replaced under its kid", NewKeySet(Key{ID: "a", Public: pub(1)}, Key{ID: "b", Public: pub(3)}), false},
		{"a key fewer", NewKeySet(Key{ID: "a", Public: pub(1)}), false},
		{"nil", nil, false},
	} {
		if got := a.Equal(tt.o); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
	var none *KeySet
	if !none.Equal(NewKeySet()) || none.Equal(a) {
		t.Error("a nil set equals exactly the empty sets")
	}
}
