package mint

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

const subject = "edgepass.assert.edgepass_edge.edge"

func TestMintRoundTrip(t *testing.T) {
	d, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kid := KeyID(d.PublicKey().Bytes())
	req := Request{Token: "a.b.c", Audience: "https://app.example.com", Iat: 1700000000}
	msg, rk, err := SealRequest(req, kid, d.PublicKey().Bytes(), subject)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(msg, []byte("a.b.c")) || bytes.Contains(msg, []byte("app.example.com")) {
		t.Fatal("the request travels in clear")
	}
	if RequestKeyID(msg) != kid {
		t.Fatalf("RequestKeyID %q", RequestKeyID(msg))
	}
	got, sk, err := OpenRequest(msg, d, kid, subject)
	if err != nil || got != req {
		t.Fatalf("OpenRequest: %v %+v", err, got)
	}
	rep := Reply{Assertion: "x.y.z", Exp: 1700000060}
	sealed, err := sk.Seal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("x.y.z")) {
		t.Fatal("the reply travels in clear")
	}
	if back, err := rk.Open(sealed); err != nil || back != rep {
		t.Fatalf("Open: %v %+v", err, back)
	}
}

// Whoever can read the request subject (the daemon's NATS credential, another
// replica sharing the edge's credential) and replays a request gets a reply it
// cannot open; a request moved to another edge's subject does not open.
func TestMintRequestReplayAndMoveAreUseless(t *testing.T) {
	d, _ := NewKey()
	kid := KeyID(d.PublicKey().Bytes())
	msg, _, err := SealRequest(Request{Token: "t", Audience: "a", Iat: 1}, kid, d.PublicKey().Bytes(), subject)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenRequest(msg, d, kid, "edgepass.assert.edgepass_edge.other"); !errors.Is(err, ErrSealed) {
		t.Fatalf("moved to another subject: %v", err)
	}
	// The eavesdropper's own request key cannot open the daemon's reply.
	_, sk, err := OpenRequest(msg, d, kid, subject)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := sk.Seal(Reply{Assertion: "secret"})
	_, attackerKey, _ := SealRequest(Request{Token: "t", Audience: "a", Iat: 1}, kid, d.PublicKey().Bytes(), subject)
	if _, err := attackerKey.Open(reply); !errors.Is(err, ErrSealed) {
		t.Fatalf("another key opened the reply: %v", err)
	}
	// Another mint key cannot open the request.
	other, _ := NewKey()
	if _, _, err := OpenRequest(msg, other, kid, subject); !errors.Is(err, ErrSealed) {
		t.Fatalf("another mint key: %v", err)
	}
}

// A reply forged or modified on the way (by a NATS writer answering in the
// daemon's place) does not open, so the edge never serves its assertion.
func TestMintForgedReplyRefused(t *testing.T) {
	d, _ := NewKey()
	kid := KeyID(d.PublicKey().Bytes())
	_, rk, _ := SealRequest(Request{Token: "t", Audience: "a", Iat: 1}, kid, d.PublicKey().Bytes(), subject)
	plain, _ := json.Marshal(Reply{Assertion: "forged"})
	if _, err := rk.Open(plain); !errors.Is(err, ErrSealed) {
		t.Fatalf("plain reply: %v", err)
	}
	var s sealedReply
	msg, _, _ := SealRequest(Request{Token: "t", Audience: "a", Iat: 1}, kid, d.PublicKey().Bytes(), subject)
	_, sk, _ := OpenRequest(msg, d, kid, subject)
	good, _ := sk.Seal(Reply{Assertion: "real"})
	_ = json.Unmarshal(good, &s)
	ct := []byte(s.Ct)
	ct[3] ^= 1
	s.Ct = string(ct)
	bad, _ := json.Marshal(s)
	if _, err := rk.Open(bad); !errors.Is(err, ErrSealed) {
		t.Fatalf("modified reply: %v", err)
	}
}
