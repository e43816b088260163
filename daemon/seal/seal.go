// Package seal encrypts the daemon's secrets at rest in NATS (signing-key
// seeds, the trust anchor, refresh and ID tokens) with AES-256-GCM under a
// 32-byte key kept in a local file, so a NATS dump or an over-privileged NATS
// credential yields nothing that can mint tokens or impersonate users.
//
// A sealed value is text: "es1.<key id>.<base64url(nonce | ciphertext)>". The
// key id lets a replica holding another key fail with a clear error instead
// of a bare authentication failure, and every value is bound to an
// associated-data string (purpose and identifier) so it cannot be moved to
// another slot.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of an encryption key in bytes (AES-256).
const KeySize = 32

// prefix marks the format version of a sealed value.
const prefix = "es1."

// MaxSealedSize bounds what Open decodes: larger input is refused unread.
const MaxSealedSize = 1 << 20

var (
	// ErrNotSealed means the value is not in the sealed format at all.
	ErrNotSealed = errors.New("seal: not a sealed value")
	// ErrTampered means the value names this daemon's key but does not
	// authenticate for the slot it was read from: altered, or copied from
	// another slot (another session, another key).
	ErrTampered = errors.New("seal: sealed value does not authenticate for this slot (altered, or moved from another slot)")
)

// WrongKeyError means the value was sealed under another encryption key: the
// replicas do not share keys.encryptionKeyFile.
type WrongKeyError struct {
	Sealed string // id of the key the value was sealed with
	Have   string // id of this daemon's key
}

func (e *WrongKeyError) Error() string {
	return fmt.Sprintf("sealed with encryption key %s, this daemon has %s; give every daemon replica the same keys.encryptionKeyFile", e.Sealed, e.Have)
}

// Key seals and opens values; safe for concurrent use.
type Key struct {
	id   string
	aead cipher.AEAD
}

// New makes a Key from KeySize raw bytes.
func New(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("seal: encryption key has %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	sum := sha256.Sum256(append([]byte("edgepass seal key id\x00"), raw...))
	return &Key{id: hex.EncodeToString(sum[:6]), aead: aead}, nil
}

// Generate returns a fresh random key.
func Generate() (*Key, []byte, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, fmt.Errorf("seal: generate encryption key: %w", err)
	}
	k, err := New(raw)
	return k, raw, err
}

// ID names the key (the first bytes of a SHA-256 of it, in hex): safe to log,
// useless to an attacker.
func (k *Key) ID() string { return k.id }

// Seal encrypts plaintext bound to aad (a purpose and an identifier, e.g.
// "session refresh token <sid>"); only Open with the same key and aad gets it back.
func (k *Key) Seal(plaintext []byte, aad string) string {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand never fails (Go 1.24+: it crashes instead)
	out := k.aead.Seal(nonce, nonce, plaintext, k.additional(aad))
	return prefix + k.id + "." + base64.RawURLEncoding.EncodeToString(out)
}

// Open decrypts a value from Seal with the same aad. Errors: ErrNotSealed,
// *WrongKeyError (sealed under another key), ErrTampered.
func (k *Key) Open(sealed, aad string) ([]byte, error) {
	if len(sealed) > MaxSealedSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrNotSealed, len(sealed), MaxSealedSize)
	}
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, ErrNotSealed
	}
	id, body, ok := strings.Cut(rest, ".")
	if !ok || len(id) != len(k.id) || strings.IndexFunc(id, notHex) >= 0 {
		return nil, ErrNotSealed
	}
	if id != k.id {
		return nil, &WrongKeyError{Sealed: id, Have: k.id}
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding", ErrNotSealed)
	}
	if len(data) < k.aead.NonceSize()+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrNotSealed)
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, data[:n], data[n:], k.additional(aad))
	if err != nil {
		return nil, ErrTampered
	}
	return plain, nil
}

// IsSealed reports whether v has the sealed format (a value written by an
// older edgepass in clear does not).
func IsSealed(v string) bool { return strings.HasPrefix(v, prefix) }

func notHex(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }

// additional binds the format and the key id too, so neither can be changed
// without the value failing to open.
func (k *Key) additional(aad string) []byte {
	return []byte(prefix + k.id + "\x00" + aad)
}

// Load reads a key file: the key in base64 (standard or URL alphabet, padding
// optional), surrounding whitespace ignored.
func Load(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: read encryption key: %w; check keys.encryptionKeyFile", err)
	}
	return parse(path, data)
}

func parse(path string, data []byte) (*Key, error) {
	text := strings.TrimSpace(string(data))
	if text == "" {
		return nil, fmt.Errorf("seal: encryption key file %s is empty; delete it to have a new key generated (only on a fresh install: data sealed with the lost key cannot be read), or restore it from another replica", path)
	}
	var raw []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			raw = b
			break
		}
	}
	if len(raw) != KeySize {
		return nil, fmt.Errorf("seal: encryption key file %s does not hold %d bytes in base64 (generate one with `head -c 32 /dev/urandom | base64`)", path, KeySize)
	}
	return New(raw)
}

// LoadOrCreate loads the key file, or, when it does not exist, generates a
// key and writes it with mode 0600 (exclusive create: replicas starting
// together on one file end up with the same key). created reports a new key.
func LoadOrCreate(path string) (k *Key, created bool, err error) {
	if path == "" {
		return nil, false, errors.New("seal: no encryption key file configured (keys.encryptionKeyFile)")
	}
	k, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("seal: create directory for the encryption key: %w; check keys.encryptionKeyFile and dataDir", err)
	}
	k, raw, err := Generate()
	if err != nil {
		return nil, false, err
	}
	// Write a temporary file completely, then link it into place: the link
	// fails if the key appeared meanwhile, and a crash never leaves a
	// half-written key file behind.
	tmp, err := os.CreateTemp(dir, ".encryption-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("seal: write encryption key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("seal: write encryption key: %w", err)
	}
	_, werr := tmp.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, false, fmt.Errorf("seal: write encryption key %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, err := Load(path) // another process won the race
			return k, false, err
		}
		return nil, false, fmt.Errorf("seal: write encryption key %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return k, true, nil
}
