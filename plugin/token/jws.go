package token

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
)

// The compact JWS steps session tokens (Sign, Verify) and signed facts
// (SignFact, VerifyFact) share. A verifier checks the whole input's size
// and spelling, then opens it (openCompact), checks the header's typ and
// kid itself, looks the key up and gets the payload (sealedPayload). Every
// error returned wraps one of the package's sentinels.

// signCompact signs payload under the header with priv and returns the
// compact serialization.
func signCompact(hdr wireHeader, payload []byte, priv ed25519.PrivateKey) (string, error) {
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(payload)
	return input + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(input))), nil
}

// openCompact splits s, a compact JWS holding exactly two dots, and
// decodes its header: one JSON object of allowedHeader members, each once,
// naming alg EdDSA. The caller checks the rest of the header (typ, kid) and
// passes the key that must have signed it to sealedPayload.
func openCompact(s string) (h wireHeader, payloadSeg, sigSeg, signed string, err error) {
	dot1 := strings.IndexByte(s, '.')
	dot2 := dot1 + 1 + strings.IndexByte(s[dot1+1:], '.')
	hdrSeg := s[:dot1]
	payloadSeg, sigSeg, signed = s[dot1+1:dot2], s[dot2+1:], s[:dot2]
	if hdrSeg == "" || payloadSeg == "" || sigSeg == "" {
		return h, "", "", "", fmt.Errorf("%w: empty segment", ErrMalformed)
	}
	hdrJSON, err := b64.DecodeString(hdrSeg)
	if err != nil {
		return h, "", "", "", fmt.Errorf("%w: header encoding: %v", ErrMalformed, err)
	}
	if err := CheckObject(hdrJSON, allowedHeader); err != nil {
		return h, "", "", "", fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := json.Unmarshal(hdrJSON, &h); err != nil {
		return h, "", "", "", fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Alg != "EdDSA" {
		return h, "", "", "", fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	}
	return h, payloadSeg, sigSeg, signed, nil
}

// SignJWS signs payload as a compact EdDSA JWS with typ and kid in its
// header: the steps session tokens and facts use, for other kinds of signed
// JSON (identity assertions).
func SignJWS(typ, kid string, payload []byte, priv ed25519.PrivateKey) (string, error) {
	return signCompact(wireHeader{Alg: "EdDSA", Typ: typ, Kid: kid}, payload, priv)
}

// OpenJWS opens s, a compact JWS with exactly two dots (the caller checked
// its size and spelling): its header's typ and kid, and the parts
// JWSPayload verifies once the caller has checked them and found the key.
// Errors wrap ErrMalformed or ErrAlgorithm.
func OpenJWS(s string) (typ, kid, payloadSeg, sigSeg, signed string, err error) {
	h, payloadSeg, sigSeg, signed, err := openCompact(s)
	return h.Typ, h.Kid, payloadSeg, sigSeg, signed, err
}

// JWSPayload checks an opened JWS's signature with pub and returns its
// payload, one JSON object with unique members. Errors wrap ErrMalformed or
// ErrSignature.
func JWSPayload(pub ed25519.PublicKey, payloadSeg, sigSeg, signed string) ([]byte, error) {
	return sealedPayload(pub, payloadSeg, sigSeg, signed)
}

// sealedPayload checks the signature of an opened compact JWS with pub and
// returns its payload: one JSON object whose members are unique.
func sealedPayload(pub ed25519.PublicKey, payloadSeg, sigSeg, signed string) ([]byte, error) {
	sig, err := b64.DecodeString(sigSeg)
	if err != nil {
		return nil, fmt.Errorf("%w: signature encoding: %v", ErrMalformed, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature has %d bytes, want %d", ErrMalformed, len(sig), ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, []byte(signed), sig) {
		return nil, ErrSignature
	}
	payload, err := b64.DecodeString(payloadSeg)
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding: %v", ErrMalformed, err)
	}
	if err := CheckObject(payload, nil); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return payload, nil
}
