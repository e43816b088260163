// Package mint is the edge's side and the daemon's side of asking for an
// identity assertion over NATS (docs/security.md, "Identity assertions").
//
// The edge never holds an assertion-signing key: for a token it admitted on
// a route with assertionHeader, it asks the daemon, on its own subject
// (natsedge.AssertionSubject), to mint an assertion for (token, audience).
// The daemon verifies the token and the edge state itself before it signs,
// so an edge credential without a valid token gets nothing, and a revoked
// session gets no assertion even from an edge that has not heard of the
// revocation yet.
//
// NATS is not trusted to be private: whoever holds the daemon's NATS
// credential, and every replica sharing an edge's credential, could read
// the request subject and the edge's inbox. So the request (which carries
// the session token) is sealed to the daemon's mint key (X25519, published
// in the anchor-signed keys fact), and the reply (the assertion) is sealed
// with a key only the requesting edge and the daemon can derive:
//
//	e        an ephemeral X25519 key of the edge, new for every request
//	k        SHA-256("edgepass mint v1" 0x00 || e.pub || d.pub || X25519(e, d))
//	request  AES-256-GCM, key HMAC-SHA256(k, "request"), AAD subject and kid
//	reply    AES-256-GCM, key HMAC-SHA256(k, "reply")
//
// A copied request only ever gets a reply the copier cannot open, and a
// reply that opens came from the holder of the mint key: the edge needs no
// other check of the responder.
//
// Standard library only; runs in Yaegi (crypto/ecdh, crypto/aes,
// crypto/cipher, crypto/hmac).
package mint

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edgepass/edgepass/plugin/token"
)

// Limits.
const (
	// MaxMessage bounds a sealed request or reply.
	MaxMessage = 64 << 10
	// MaxAge is how far a request's iat may be from the daemon's clock.
	MaxAge = 30 // seconds
)

// Reasons a daemon refuses to mint (Reply.Reason): the edge maps the
// token-related ones to its own refusal reasons.
const (
	ReasonBadToken       = "bad_token"
	ReasonExpired        = "expired"
	ReasonSessionRevoked = "session_revoked"
	ReasonUserRevoked    = "user_revoked"
	ReasonTooLong        = "too_long"
	ReasonAudience       = "bad_audience"
	ReasonUnavailable    = "unavailable"
)

// ErrSealed: a sealed message that does not open (wrong key, modified,
// another subject) or is out of format.
var ErrSealed = errors.New("mint: sealed message does not open")

var b64 = base64.RawURLEncoding

// Request is what an edge asks for.
type Request struct {
	// Token is the credential the edge admitted (session or service token).
	Token string `json:"token"`
	// Audience is the middleware's assertionAudience.
	Audience string `json:"aud"`
	// Iat is when the edge sealed it (unix seconds).
	Iat int64 `json:"iat"`
}

// Reply is the daemon's answer: an assertion, or why not.
type Reply struct {
	Assertion string `json:"assertion,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	// Reason is set when there is no assertion (Reason* constants).
	Reason string `json:"reason,omitempty"`
}

// sealedRequest is a request on the wire.
type sealedRequest struct {
	V   int    `json:"v"`
	Kid string `json:"kid"`
	Epk string `json:"epk"`
	N   string `json:"n"`
	Ct  string `json:"ct"`
}

// sealedReply is a reply on the wire.
type sealedReply struct {
	N  string `json:"n"`
	Ct string `json:"ct"`
}

// KeyID is the id of a mint public key: "mint-" and the first 16
// characters of base64url(SHA-256(key)).
func KeyID(pub []byte) string { return "mint-" + token.KeyHash(pub) }

// ReplyKey opens the reply to one request (held by the edge that sealed it).
type ReplyKey struct {
	key []byte
}

// derive returns the request and reply keys of one exchange.
func derive(epk, dpk, shared []byte) ([]byte, []byte) {
	h := sha256.New()
	h.Write([]byte("edgepass mint v1\x00"))
	h.Write(epk)
	h.Write(dpk)
	h.Write(shared)
	k := h.Sum(nil)
	req := hmac.New(sha256.New, k)
	req.Write([]byte("request"))
	rep := hmac.New(sha256.New, k)
	rep.Write([]byte("reply"))
	return req.Sum(nil), rep.Sum(nil)
}

func requestAAD(subject, kid string) []byte {
	return []byte("edgepass mint v1 request\x00" + subject + "\x00" + kid)
}

var replyAAD = []byte("edgepass mint v1 reply")

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealRequest seals req to the daemon's mint key (kid, pub as published in
// the keys fact) for subject, the edge's assertion subject. It returns the
// message to send and the key that opens the reply.
func SealRequest(req Request, kid string, pub []byte, subject string) ([]byte, *ReplyKey, error) {
	curve := ecdh.X25519()
	dpub, err := curve.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("mint: daemon mint key: %w", err)
	}
	eph, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mint: %w", err)
	}
	shared, err := eph.ECDH(dpub)
	if err != nil {
		return nil, nil, fmt.Errorf("mint: %w", err)
	}
	epk := eph.PublicKey().Bytes()
	reqKey, repKey := derive(epk, pub, shared)
	plain, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	aead, err := gcm(reqKey)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	ct := aead.Seal(nil, nonce, plain, requestAAD(subject, kid))
	msg, err := json.Marshal(sealedRequest{V: 1, Kid: kid, Epk: b64.EncodeToString(epk), N: b64.EncodeToString(nonce), Ct: b64.EncodeToString(ct)})
	if err != nil {
		return nil, nil, err
	}
	return msg, &ReplyKey{key: repKey}, nil
}

// RequestKeyID returns the mint key id a sealed request names ("" if unreadable).
func RequestKeyID(msg []byte) string {
	var s sealedRequest
	if len(msg) > MaxMessage || json.Unmarshal(msg, &s) != nil {
		return ""
	}
	return s.Kid
}

// OpenRequest opens a request sealed to priv (whose id is kid) on subject;
// it returns the request and the key that seals the reply.
func OpenRequest(msg []byte, priv *ecdh.PrivateKey, kid, subject string) (Request, *ReplyKey, error) {
	var none Request
	if len(msg) > MaxMessage {
		return none, nil, fmt.Errorf("%w: %d bytes", ErrSealed, len(msg))
	}
	var s sealedRequest
	if err := json.Unmarshal(msg, &s); err != nil {
		return none, nil, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	if s.V != 1 || s.Kid != kid {
		return none, nil, fmt.Errorf("%w: version %d, key %q", ErrSealed, s.V, s.Kid)
	}
	epk, err1 := b64.DecodeString(s.Epk)
	nonce, err2 := b64.DecodeString(s.N)
	ct, err3 := b64.DecodeString(s.Ct)
	if err1 != nil || err2 != nil || err3 != nil {
		return none, nil, fmt.Errorf("%w: encoding", ErrSealed)
	}
	epub, err := ecdh.X25519().NewPublicKey(epk)
	if err != nil {
		return none, nil, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	shared, err := priv.ECDH(epub)
	if err != nil {
		return none, nil, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	reqKey, repKey := derive(epk, priv.PublicKey().Bytes(), shared)
	aead, err := gcm(reqKey)
	if err != nil {
		return none, nil, err
	}
	if len(nonce) != aead.NonceSize() {
		return none, nil, fmt.Errorf("%w: nonce", ErrSealed)
	}
	plain, err := aead.Open(nil, nonce, ct, requestAAD(subject, kid))
	if err != nil {
		return none, nil, ErrSealed
	}
	var req Request
	if err := json.Unmarshal(plain, &req); err != nil {
		return none, nil, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	return req, &ReplyKey{key: repKey}, nil
}

// Seal seals the daemon's reply.
func (k *ReplyKey) Seal(rep Reply) ([]byte, error) {
	plain, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	aead, err := gcm(k.key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ct := aead.Seal(nil, nonce, plain, replyAAD)
	return json.Marshal(sealedReply{N: b64.EncodeToString(nonce), Ct: b64.EncodeToString(ct)})
}

// Open opens the daemon's reply; a reply that opens came from the holder
// of the mint key the request was sealed to.
func (k *ReplyKey) Open(msg []byte) (Reply, error) {
	var none Reply
	if len(msg) > MaxMessage {
		return none, fmt.Errorf("%w: %d bytes", ErrSealed, len(msg))
	}
	var s sealedReply
	if err := json.Unmarshal(msg, &s); err != nil {
		return none, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	nonce, err1 := b64.DecodeString(s.N)
	ct, err2 := b64.DecodeString(s.Ct)
	if err1 != nil || err2 != nil {
		return none, fmt.Errorf("%w: encoding", ErrSealed)
	}
	aead, err := gcm(k.key)
	if err != nil {
		return none, err
	}
	if len(nonce) != aead.NonceSize() {
		return none, fmt.Errorf("%w: nonce", ErrSealed)
	}
	plain, err := aead.Open(nil, nonce, ct, replyAAD)
	if err != nil {
		return none, ErrSealed
	}
	var rep Reply
	if err := json.Unmarshal(plain, &rep); err != nil {
		return none, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	return rep, nil
}

// NewKey generates a daemon mint key (X25519).
func NewKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// ParseKey reads a daemon mint key from its 32 private bytes.
func ParseKey(b []byte) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().NewPrivateKey(b)
}
