package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, _, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealRoundTrip(t *testing.T) {
	k := mustKey(t)
	for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("refresh-token"), 500)} {
		s := k.Seal(plain, "session refresh token abc")
		if !IsSealed(s) || !strings.HasPrefix(s, "es1."+k.ID()+".") {
			t.Fatalf("sealed form %q", s)
		}
		if len(plain) > 8 && strings.Contains(s, string(plain[:8])) {
			t.Fatal("plaintext visible in the sealed value")
		}
		got, err := k.Open(s, "session refresh token abc")
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	if k.Seal([]byte("a"), "x") == k.Seal([]byte("a"), "x") {
		t.Error("two seals of one value are equal: nonce reused")
	}
}

func TestOpenRefuses(t *testing.T) {
	k := mustKey(t)
	other := mustKey(t)
	good := k.Seal([]byte("secret"), "slot A")
	body := strings.TrimPrefix(good, "es1."+k.ID()+".")
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	raw[len(raw)-1] ^= 1
	flipped := "es1." + k.ID() + "." + base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		name, value, aad string
		want             error
	}{
		// Attack: a sealed value copied into another slot (another session, another key) must not open there.
		{"moved to another slot", good, "slot B", ErrTampered},
		{"bit flipped", flipped, "slot A", ErrTampered},
		{"plaintext", "secret", "slot A", ErrNotSealed},
		{"empty", "", "slot A", ErrNotSealed},
		{"no body", "es1." + k.ID(), "slot A", ErrNotSealed},
		{"short body", "es1." + k.ID() + ".AAAA", "slot A", ErrNotSealed},
		{"bad base64", "es1." + k.ID() + ".!!!!", "slot A", ErrNotSealed},
		{"bad key id", "es1.XYZ." + body, "slot A", ErrNotSealed},
		{"oversized", "es1." + strings.Repeat("a", MaxSealedSize), "slot A", ErrNotSealed},
	}
	for _, tc := range tests {
		if _, err := k.Open(tc.value, tc.aad); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	_, err := other.Open(good, "slot A")
	var wk *WrongKeyError
	if !errors.As(err, &wk) || wk.Sealed != k.ID() || wk.Have != other.ID() {
		t.Fatalf("Open with another key = %v, want a WrongKeyError naming both ids", err)
	}
	if !strings.Contains(err.Error(), "give every daemon replica the same keys.encryptionKeyFile") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "encryption.key")
	k, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate (fresh) = %v, created %v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || k2.ID() != k.ID() {
		t.Fatalf("LoadOrCreate (existing) = %v, created %v, id %s want %s", err, created, k2.ID(), k.ID())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key (no temporary files)", len(entries))
	}

	raw := bytes.Repeat([]byte{7}, KeySize)
	want, _ := New(raw)
	files := []struct {
		name, content string
		ok            bool
	}{
		{"std with newline", base64.StdEncoding.EncodeToString(raw) + "\n", true},
		{"url raw", base64.RawURLEncoding.EncodeToString(raw), true},
		{"crlf", base64.StdEncoding.EncodeToString(raw) + "\r\n", true},
		{"empty", "", false},
		{"short", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"not base64", "hello world", false},
	}
	for _, f := range files {
		p := filepath.Join(dir, strings.ReplaceAll(f.name, " ", "_"))
		if err := os.WriteFile(p, []byte(f.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, _, err := LoadOrCreate(p)
		if (err == nil) != f.ok {
			t.Errorf("%s: err %v, want ok=%v", f.name, err, f.ok)
			continue
		}
		if f.ok && got.ID() != want.ID() {
			t.Errorf("%s: key id %s, want %s", f.name, got.ID(), want.ID())
		}
		if !f.ok && !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", f.name, err)
		}
	}
	if _, _, err := LoadOrCreate(""); err == nil {
		t.Error("LoadOrCreate(\"\") = nil error")
	}
}

// Replicas sharing one data directory and starting together must end up
// with the same key, never overwrite each other's.
func TestLoadOrCreateConcurrentStartsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "encryption.key")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID()
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent starts got different keys: %v", ids)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := New(bytes.Repeat([]byte{1}, KeySize))
	f.Add(k.Seal([]byte("seed"), "aad"), "aad")
	f.Add(k.Seal(nil, ""), "")
	f.Add("es1."+k.ID()+".", "aad")
	f.Add("es1.000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "aad")
	f.Add("plain", "x")
	f.Fuzz(func(t *testing.T, sealed, aad string) {
		plain, err := k.Open(sealed, aad)
		if err != nil {
			var wk *WrongKeyError
			if !errors.Is(err, ErrNotSealed) && !errors.Is(err, ErrTampered) && !errors.As(err, &wk) {
				t.Fatalf("Open error %v is none of the documented kinds", err)
			}
			return
		}
		// Whatever opens must have been sealed by this key for this aad:
		// re-sealing and opening round-trips.
		again, err := k.Open(k.Seal(plain, aad), aad)
		if err != nil || !bytes.Equal(again, plain) {
			t.Fatalf("round trip of accepted value failed: %v", err)
		}
	})
}
