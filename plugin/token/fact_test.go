package token

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func anchorPair(seed byte) (ed25519.PrivateKey, *KeySet) {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	priv := ed25519.NewKeyFromSeed(s)
	pub := priv.Public().(ed25519.PublicKey)
	ks, err := ParseAnchors([]string{FormatAnchor(pub)})
	if err != nil {
		panic(err)
	}
	return priv, ks
}

func TestFactRoundTrip(t *testing.T) {
	priv, anchors := anchorPair(1)
	raw, err := SignFact([]byte(`{"key":"keys","iat":1}`), priv)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := VerifyFact([]byte(raw), anchors)
	if err != nil || string(payload) != `{"key":"keys","iat":1}` {
		t.Fatalf("VerifyFact = %s, %v", payload, err)
	}
}

// Attack: confuse the two kinds of signed object — a session token replayed
// as a fact, a fact presented as a session token — or forge a fact.
func TestFactRefusesForgeriesAndTypeConfusion(t *testing.T) {
	priv, anchors := anchorPair(1)
	other, _ := anchorPair(2)
	good, _ := SignFact([]byte(`{"key":"keys"}`), priv)
	rogue, _ := SignFact([]byte(`{"key":"keys"}`), other)
	kid := AnchorID(priv.Public().(ed25519.PublicKey))
	session, err := Sign(&Claims{Subject: "s", IssuedAt: testNow.Unix(), Expiry: testNow.Unix() + 60}, kid, priv)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64.EncodeToString([]byte(`{"key":"groups.x"}`)) + "." + parts[2]
	cases := []struct {
		name, raw string
		want      error
	}{
		{"RogueSigner", rogue, ErrUnknownKey},
		{"SessionTokenAsFact", session, ErrMalformed},
		{"TamperedPayload", tampered, ErrSignature},
		{"NotJWS", "hello", ErrMalformed},
		{"TooLarge", strings.Repeat("a", MaxFactSize+1), ErrTooLarge},
	}
	for _, tt := range cases {
		if _, err := VerifyFact([]byte(tt.raw), anchors); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	v := &Verifier{}
	if _, err := v.Verify(good, NewKeySet(Key{ID: kid, Public: priv.Public().(ed25519.PublicKey)}), testNow); !errors.Is(err, ErrMalformed) {
		t.Errorf("fact accepted as a session token: %v", err)
	}
}

func TestParseAnchorsRefusesBadText(t *testing.T) {
	for _, in := range [][]string{nil, {""}, {"abc"}, {strings.Repeat("A", 44)}, {"not base64!"}} {
		if _, err := ParseAnchors(in); !errors.Is(err, ErrAnchor) {
			t.Errorf("ParseAnchors(%q): err = %v, want ErrAnchor", in, err)
		}
	}
}

func FuzzVerifyFact(f *testing.F) {
	priv, anchors := anchorPair(1)
	good, _ := SignFact([]byte(`{"key":"keys","iat":1}`), priv)
	f.Add([]byte(good))
	f.Add([]byte("a.b.c"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		payload, err := VerifyFact(raw, anchors)
		if err == nil && CheckObject(payload, nil) != nil {
			t.Fatalf("accepted a payload that is not one JSON object: %q", payload)
		}
	})
}
