package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// EdgeRevoker makes every edge refuse a session's tokens until exp (a zero
// exp: for a whole session lifetime); *edgepub.Publisher implements it.
type EdgeRevoker interface {
	RevokeSession(ctx context.Context, sid string, exp time.Time) error
}

// Deleter removes a stored session; *Store implements it.
type Deleter interface {
	Delete(ctx context.Context, id string) error
}

// RevokeCounter counts revocations by who ended the session (a bounded label).
type RevokeCounter interface {
	Revoked(kind string)
}

// Revoker ends one session everywhere. Sign-out, back-channel logout,
// refresh and the admin API all end sessions through it, so the order that
// makes a revocation safe lives in one place.
type Revoker struct {
	Edge    EdgeRevoker
	Store   Deleter
	Metrics RevokeCounter // optional
}

// Revoke publishes the revocation first, then deletes the stored session
// (and its refresh token) and counts it under kind. A failed publish leaves
// the session stored, so the caller can retry; a session already gone is
// not an error. exp is when the session's tokens expire anyway (zero: a
// whole lifetime from now).
func (r Revoker) Revoke(ctx context.Context, sid string, exp time.Time, kind string) error {
	if err := r.Edge.RevokeSession(ctx, sid, exp); err != nil {
		return fmt.Errorf("publish revocation of session %s…: %w", Short(sid), err)
	}
	if err := r.Store.Delete(ctx, sid); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete session %s…: %w", Short(sid), err)
	}
	if r.Metrics != nil {
		r.Metrics.Revoked(kind)
	}
	return nil
}

// Short is the first 8 characters of a session id: enough to find it in
// logs, too little to use it.
func Short(id string) string {
	return id[:min(8, len(id))]
}
