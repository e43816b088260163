package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/base64url"
	"github.com/edgepass/edgepass/daemon/kvbucket"
	"github.com/edgepass/edgepass/daemon/seal"
)

// IDBytes is the entropy of a session id; ids are IDBytes random bytes in
// base64url without padding (43 characters).
const IDBytes = 32

var (
	// ErrNotFound means no live session has that id (never existed, deleted,
	// expired, or the id is malformed).
	ErrNotFound = errors.New("session not found")
	// ErrConflict means another replica changed the session since it was read.
	ErrConflict = errors.New("session changed concurrently")
)

// NewID returns a fresh session id from crypto/rand (which never fails
// since Go 1.24: it crashes the program instead of returning weak bytes).
func NewID() string {
	b := make([]byte, IDBytes)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidID reports whether id can be a session id: 22 to 128 base64url
// characters. Everything else is refused before it reaches NATS, where dots
// and wildcards would change the key's meaning.
func ValidID(id string) bool { return base64url.Valid(id, 22, 128) }

// StoreOptions configures the session bucket.
type StoreOptions struct {
	// Bucket is the KV bucket name (nats.sessionBucket).
	Bucket string
	// Lifetime is this replica's session lifetime.
	Lifetime time.Duration
	// Horizon sizes the bucket's max age: the longest lifetime any replica
	// still has sessions under (*keys.Ring); nil = Lifetime.
	Horizon kvbucket.Horizon
	// Replicas is the JetStream replica count (1 on a single server).
	Replicas int
	// Seal encrypts refresh and ID tokens at rest (keys.encryptionKeyFile); required.
	Seal *seal.Key
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Store keeps sessions in a JetStream KV bucket (file storage), key = session
// id. Every write returns only after JetStream acknowledged it, so a session
// handed to a browser survives a crash of the daemon. Refresh and ID tokens
// are sealed, bound to their session id, transparently to callers.
type Store struct {
	bucket *kvbucket.Sized
	kv     jetstream.KeyValue
	seal   *seal.Key
	now    func() time.Time
}

// OpenStore creates the bucket, or updates its settings, and returns the store.
func OpenStore(ctx context.Context, js jetstream.JetStream, o StoreOptions) (*Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("session store: bucket name required (nats.sessionBucket)")
	}
	if o.Lifetime <= 0 {
		return nil, errors.New("session store: lifetime must be positive (session.lifetime)")
	}
	if o.Seal == nil {
		return nil, errors.New("session store: no encryption key (keys.encryptionKeyFile): refresh tokens are never stored in clear")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Horizon == nil {
		o.Horizon = kvbucket.FixedHorizon(o.Lifetime)
	}
	b, err := kvbucket.OpenSized(ctx, js, o.Bucket, "edgepass sessions (private to the daemon)", o.Replicas, o.Horizon, 0)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	return &Store{bucket: b, kv: b.KV, seal: o.Seal, now: o.Now}, nil
}

// FitTTL sets the bucket's max age to the horizon, lowering it once the
// longest-lived sessions have expired; run it on the maintenance tick.
func (st *Store) FitTTL(ctx context.Context) error {
	if err := st.bucket.Fit(ctx); err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return nil
}

// Put creates or replaces the session.
func (st *Store) Put(ctx context.Context, s *Session) error {
	data, err := st.encode(s)
	if err != nil {
		return err
	}
	if err := st.bucket.Raise(ctx); err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	if _, err := st.kv.Put(ctx, s.ID, data); err != nil {
		return fmt.Errorf("session store: put: %w", err)
	}
	return nil
}

// Update replaces the session if it is still at revision rev (from Get);
// ErrConflict means another replica wrote it first: re-read and retry.
func (st *Store) Update(ctx context.Context, s *Session, rev uint64) (uint64, error) {
	data, err := st.encode(s)
	if err != nil {
		return 0, err
	}
	if err := st.bucket.Raise(ctx); err != nil {
		return 0, fmt.Errorf("session store: %w", err)
	}
	n, err := st.kv.Update(ctx, s.ID, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("session store: update: %w", err)
	}
	return n, nil
}

// Get returns the live session and its revision, or ErrNotFound.
func (st *Store) Get(ctx context.Context, id string) (*Session, uint64, error) {
	if !ValidID(id) {
		return nil, 0, fmt.Errorf("%w: malformed id", ErrNotFound)
	}
	e, err := st.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("session store: get: %w", err)
	}
	s, err := st.decode(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("session store: get %s…: %w", Short(id), err)
	}
	if !s.ExpiresAt.After(st.now()) {
		return nil, 0, ErrNotFound
	}
	return s, e.Revision(), nil
}

// Delete removes the session (a purge: nothing of it stays on disk).
// Deleting a missing session is not an error.
func (st *Store) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: malformed id", ErrNotFound)
	}
	if err := st.kv.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("session store: delete: %w", err)
	}
	return nil
}

// List returns the live sessions, oldest first (issuedAt, then id: the
// order the admin API answers in); subject != "" keeps only that user's
// sessions.
func (st *Store) List(ctx context.Context, subject string) ([]Session, error) {
	w, err := st.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("session store: list: %w", err)
	}
	defer w.Stop()
	now := st.now()
	var out []Session
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("session store: list: watcher closed")
			}
			if e == nil { // all current values delivered
				sort.Slice(out, func(i, j int) bool {
					if !out[i].IssuedAt.Equal(out[j].IssuedAt) {
						return out[i].IssuedAt.Before(out[j].IssuedAt)
					}
					return out[i].ID < out[j].ID
				})
				return out, nil
			}
			s, err := st.decode(e.Value())
			var wrongKey *seal.WrongKeyError
			if errors.As(err, &wrongKey) {
				return nil, fmt.Errorf("session store: list: %w", err)
			}
			if err != nil || !s.ExpiresAt.After(now) || (subject != "" && s.Subject != subject) {
				continue // damaged entries are skipped; Get reports them
			}
			out = append(out, *s)
		case <-ctx.Done():
			return nil, fmt.Errorf("session store: list: %w", ctx.Err())
		}
	}
}

func (st *Store) encode(s *Session) ([]byte, error) {
	if s == nil || !ValidID(s.ID) {
		return nil, errors.New("session store: session needs a valid id (use NewID)")
	}
	if s.Subject == "" {
		return nil, errors.New("session store: session needs a subject")
	}
	if s.ExpiresAt.IsZero() {
		return nil, errors.New("session store: session needs an expiry")
	}
	stored := *s
	if stored.RefreshToken != "" {
		stored.RefreshToken = st.seal.Seal([]byte(s.RefreshToken), refreshAAD(s.ID))
	}
	if stored.IDToken != "" {
		stored.IDToken = st.seal.Seal([]byte(s.IDToken), idTokenAAD(s.ID))
	}
	data, err := json.Marshal(&stored)
	if err != nil {
		return nil, fmt.Errorf("session store: encode: %w", err)
	}
	return data, nil
}

// Associated data binding a sealed secret to its session: a sealed refresh
// token copied into another session's entry does not open there.
func refreshAAD(sid string) string { return "edgepass session " + sid + " refresh token" }
func idTokenAAD(sid string) string { return "edgepass session " + sid + " id token" }

func (st *Store) decode(data []byte) (*Session, error) {
	var s Session
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	if !ValidID(s.ID) || s.Subject == "" {
		return nil, errors.New("decode session: missing id or subject")
	}
	var err error
	if s.RefreshToken, err = st.open(s.RefreshToken, refreshAAD(s.ID)); err != nil {
		return nil, fmt.Errorf("decode session: refresh token: %w", err)
	}
	if s.IDToken, err = st.open(s.IDToken, idTokenAAD(s.ID)); err != nil {
		return nil, fmt.Errorf("decode session: ID token: %w", err)
	}
	return &s, nil
}

// open unseals v; a value an older edgepass stored in clear is returned as
// is (sealed on the session's next write).
func (st *Store) open(v, aad string) (string, error) {
	if v == "" || !seal.IsSealed(v) {
		return v, nil
	}
	plain, err := st.seal.Open(v, aad)
	var wrongKey *seal.WrongKeyError
	if errors.As(err, &wrongKey) {
		return "", fmt.Errorf("session %w", err)
	}
	if err != nil {
		return "", err
	}
	return string(plain), nil
}
