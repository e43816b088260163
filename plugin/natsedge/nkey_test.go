package natsedge

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"
)

// Generated with github.com/nats-io/nkeys from the seed bytes 0,7,14,...
const (
	testUserSeed    = "SUAAABYOCUOCGKRRHA7UMTKULNRGS4DXP2CYZE42UGUK7NV5YTF5FWIXJQ"
	testUserPublic  = "UBGQ5Q5A2A76774TVG6M4KREWQDNI32EV37R654H3LW3CPFK7JACYEW2"
	testAccountSeed = "SAAAABYOCUOCGKRRHA7UMTKULNRGS4DXP2CYZE42UGUK7NV5YTF5FWPEQA"
)

func TestParseNKeySeed(t *testing.T) {
	k, err := parseNKeySeed(testUserSeed)
	if err != nil {
		t.Fatal(err)
	}
	if k.public != testUserPublic {
		t.Fatalf("public key %s, want %s", k.public, testUserPublic)
	}
	sig, err := base64.RawURLEncoding.DecodeString(k.sign("nonce-123"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := decodeUserNKey(k.public)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte("nonce-123"), sig) {
		t.Fatal("signature does not verify with the public key")
	}
}

// TestParseNKeySeedRejectsBadSeeds refuses seeds an operator mistyped or
// pasted from the wrong place, so a bad seed fails at configuration time.
func TestParseNKeySeedRejectsBadSeeds(t *testing.T) {
	flip := []byte(testUserSeed)
	if flip[20] == 'A' {
		flip[20] = 'B'
	} else {
		flip[20] = 'A'
	}
	tests := []struct {
		name string
		seed string
		want error
	}{
		{"empty", "", ErrNKeySeed},
		{"not base32", "SU!!!!", ErrNKeySeed},
		{"truncated", testUserSeed[:40], ErrNKeySeed},
		{"one character changed", string(flip), ErrNKeyChecksum},
		{"account seed", testAccountSeed, ErrNKeyPrefix},
		{"public key instead of seed", testUserPublic, ErrNKeySeed},
		{"very long", string(make([]byte, 1000)), ErrNKeySeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseNKeySeed(tt.seed)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCRC16MatchesXModem(t *testing.T) {
	// CRC-16/XMODEM check value for "123456789".
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
}

// decodeUserNKey decodes a "U..." public key, as a server does.
func decodeUserNKey(s string) (ed25519.PublicKey, error) {
	raw, err := nkeyBase32.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(raw) != 1+ed25519.PublicKeySize+2 {
		return nil, errors.New("bad length")
	}
	body := raw[:len(raw)-2]
	if crc16(body) != uint16(raw[len(raw)-2])|uint16(raw[len(raw)-1])<<8 {
		return nil, errors.New("bad checksum")
	}
	if body[0] != nkeyPrefixUser {
		return nil, errors.New("not a user key")
	}
	return ed25519.PublicKey(body[1:]), nil
}
