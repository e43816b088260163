package natsedge

import (
	"crypto/ed25519"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"strings"
)

// NKey prefix bytes, as defined by github.com/nats-io/nkeys.
const (
	nkeyPrefixSeed = 18 << 3 // 'S'
	nkeyPrefixUser = 20 << 3 // 'U'
)

var nkeyBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Errors returned when an NKey seed cannot be used.
var (
	ErrNKeySeed     = errors.New("natsedge: nats.nkeySeed is not a valid NATS seed (want the \"SU...\" line of the user's .nk file)")
	ErrNKeyChecksum = errors.New("natsedge: nats.nkeySeed checksum does not match (mistyped or truncated seed?)")
	ErrNKeyPrefix   = errors.New("natsedge: nats.nkeySeed is not a user seed (must start with \"SU\")")
)

// nkeyUser is a parsed NKey user identity: the private key that signs the
// server's nonce and the public key ("U...") the server knows the user by.
type nkeyUser struct {
	priv   ed25519.PrivateKey
	public string
}

// crc16 is the CRC-16/XMODEM checksum (polynomial 0x1021, initial 0) that
// NATS appends to encoded keys.
func crc16(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// parseNKeySeed decodes an NKey user seed ("SU..."), checks its checksum and
// prefix, and derives the ed25519 key pair from it.
func parseNKeySeed(seed string) (*nkeyUser, error) {
	seed = strings.TrimSpace(seed)
	if seed == "" || len(seed) > 256 {
		return nil, ErrNKeySeed
	}
	raw, err := nkeyBase32.DecodeString(seed)
	if err != nil {
		return nil, ErrNKeySeed
	}
	// 2 prefix bytes + 32 byte seed + 2 byte checksum.
	if len(raw) != 2+ed25519.SeedSize+2 {
		return nil, ErrNKeySeed
	}
	body := raw[:len(raw)-2]
	sum := uint16(raw[len(raw)-2]) | uint16(raw[len(raw)-1])<<8
	if crc16(body) != sum {
		return nil, ErrNKeyChecksum
	}
	b1 := raw[0] & 248
	b2 := (raw[0]&7)<<5 | (raw[1]&248)>>3
	if b1 != nkeyPrefixSeed || b2 != nkeyPrefixUser {
		return nil, ErrNKeyPrefix
	}
	priv := ed25519.NewKeyFromSeed(raw[2 : 2+ed25519.SeedSize])
	pub := priv.Public().(ed25519.PublicKey)
	return &nkeyUser{priv: priv, public: encodeNKey(nkeyPrefixUser, pub)}, nil
}

// encodeNKey encodes a public key with its prefix byte and checksum, the form
// servers list in their authorization config ("U...").
func encodeNKey(prefix byte, key []byte) string {
	raw := make([]byte, 0, 1+len(key)+2)
	raw = append(raw, prefix)
	raw = append(raw, key...)
	sum := crc16(raw)
	raw = append(raw, byte(sum), byte(sum>>8))
	return nkeyBase32.EncodeToString(raw)
}

// sign signs the server's nonce for the CONNECT "sig" field.
func (k *nkeyUser) sign(nonce string) string {
	sig := ed25519.Sign(k.priv, []byte(nonce))
	return base64.RawURLEncoding.EncodeToString(sig)
}
