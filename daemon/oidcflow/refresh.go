package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/session"
	"golang.org/x/oauth2"
)

// RunRefresh re-checks sessions at the IdP every RefreshInterval until ctx
// ends (it returns at once when the interval is 0). Run it in one goroutine.
func (h *Handler) RunRefresh(ctx context.Context) {
	if h.opts.RefreshInterval <= 0 {
		return
	}
	t := time.NewTicker(h.opts.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := h.RefreshOnce(ctx); err != nil {
				h.log.Warn("session refresh", "err", err)
			}
		}
	}
}

// RefreshOnce refreshes every live session that has a refresh token and was
// not refreshed in the last half interval (by this or another replica): a
// refused refresh token revokes the session (the user was disabled or signed
// out at the IdP); changed groups are pushed to the edge.
func (h *Handler) RefreshOnce(ctx context.Context) error {
	p, err := h.idp.get(ctx)
	if err != nil {
		return err
	}
	all, err := h.opts.Store.List(ctx, "")
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var errs []error
	for i := range all {
		if !h.refreshDue(&all[i], h.now()) {
			continue
		}
		outcome, err := h.refreshSession(ctx, p, all[i].ID)
		if err != nil {
			errs = append(errs, err)
			outcome = RefreshError
		}
		if m, ok := h.opts.Metrics.(refreshMetrics); ok {
			m.Refreshed(outcome)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// refreshDue reports whether s should be refreshed now.
func (h *Handler) refreshDue(s *session.Session, now time.Time) bool {
	if s.RefreshToken == "" || !s.ExpiresAt.After(now) {
		return false
	}
	last := s.RefreshedAt
	if last.IsZero() {
		last = s.IssuedAt
	}
	return now.Sub(last) >= h.opts.RefreshInterval/2
}

// Refresh outcomes, counted by a Metrics that implements Refreshed (a
// bounded label set: edgepass_refresh_total{outcome}).
const (
	RefreshUnchanged     = "unchanged"
	RefreshGroupsChanged = "groups_changed"
	RefreshRevoked       = "revoked"
	RefreshSkipped       = "skipped"
	RefreshError         = "error"
)

// RefreshOutcomes lists every refresh outcome, for metrics whose series
// start at zero.
var RefreshOutcomes = []string{RefreshUnchanged, RefreshGroupsChanged, RefreshRevoked, RefreshSkipped, RefreshError}

// refreshMetrics is what RefreshOnce reports to, when Metrics has it.
type refreshMetrics interface {
	Refreshed(outcome string)
}

// maxStoreAttempts bounds re-reads when another replica keeps changing a
// session while this one stores its refresh result.
const maxStoreAttempts = 5

// refreshSession refreshes one session at the IdP. It first claims the
// session by writing RefreshedAt at the revision it read: of two replicas
// refreshing at once only one wins that write, so a rotating refresh token
// is spent once (spending it twice looks like token theft to the IdP, which
// then refuses it and the session would be revoked).
func (h *Handler) refreshSession(ctx context.Context, p *provider, sid string) (string, error) {
	short := session.Short(sid)
	s, rev, err := h.opts.Store.Get(ctx, sid)
	if errors.Is(err, session.ErrNotFound) {
		return RefreshSkipped, nil // signed out meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("refresh session %s…: %w", short, err)
	}
	if !h.refreshDue(s, h.now()) {
		return RefreshSkipped, nil // another replica refreshed it since the list was read
	}
	s.RefreshedAt = h.now()
	rev, err = h.opts.Store.Update(ctx, s, rev)
	if errors.Is(err, session.ErrConflict) {
		return RefreshSkipped, nil // another replica claimed it, or it was signed out
	}
	if err != nil {
		return "", fmt.Errorf("refresh session %s…: claim: %w", short, err)
	}

	cctx := h.idp.clientContext(ctx)
	tok, err := p.oauth.TokenSource(cctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			h.log.Info("refresh: the IdP refused the refresh token (user disabled or signed out there); revoking the session",
				"sub", s.Subject, "sid", short)
			return RefreshRevoked, h.refreshRevoke(ctx, s, "the identity provider refused the refresh token (user disabled or signed out there)")
		}
		return "", fmt.Errorf("refresh session %s… at the IdP: %w", short, err)
	}
	claims := claimSet{}
	idToken := ""
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verifier.Verify(cctx, raw)
		if err != nil {
			return "", fmt.Errorf("refresh session %s…: ID token rejected: %w", short, err)
		}
		if idt.Subject != s.Subject {
			return "", fmt.Errorf("refresh session %s…: refreshed ID token names another subject", short)
		}
		if err := idt.Claims(&claims); err != nil {
			return "", fmt.Errorf("refresh session %s…: %w", short, err)
		}
		idToken = raw
	}
	id, err := h.identify(ctx, p, s.Subject, claims, tok)
	if err != nil {
		return "", fmt.Errorf("refresh session %s…: %w", short, err)
	}
	if !h.allowed(id.Groups) {
		h.log.Info("refresh: user is no longer in a required group; revoking the session", "sub", s.Subject, "sid", short)
		return RefreshRevoked, h.refreshRevoke(ctx, s, "no longer in a group of oidc.requiredGroups")
	}
	var groups []string
	if id.hasGroups && !sameSet(id.Groups, s.Groups) && !h.overridden(ctx, s.Subject) {
		if err := h.opts.Edge.SetGroups(ctx, s.Subject, id.Groups); err != nil {
			return "", fmt.Errorf("refresh session %s…: publish groups: %w", short, err)
		}
		h.log.Info("refresh: groups changed at the IdP", "sub", s.Subject, "groups", id.Groups)
		ge := sessionEvent(events.KindGroupsChanged, s)
		ge.Detail = "groups: " + strings.Join(id.Groups, ", ")
		h.record(ctx, h.idpEvent(ge, events.SourceRefresh, ""))
		groups = id.Groups
	}

	// Store the result on the latest version of the session; one deleted
	// meanwhile (signed out) stays deleted.
	for attempt := 1; ; attempt++ {
		if tok.RefreshToken != "" {
			s.RefreshToken = tok.RefreshToken
		}
		if idToken != "" {
			s.IDToken = idToken
		}
		if groups != nil {
			s.Groups = groups
		}
		s.RefreshedAt = h.now()
		_, err := h.opts.Store.Update(ctx, s, rev)
		if err == nil {
			if groups != nil {
				return RefreshGroupsChanged, nil
			}
			return RefreshUnchanged, nil
		}
		if !errors.Is(err, session.ErrConflict) || attempt == maxStoreAttempts {
			return "", fmt.Errorf("refresh session %s…: store: %w", short, err)
		}
		s, rev, err = h.opts.Store.Get(ctx, sid)
		if errors.Is(err, session.ErrNotFound) {
			return RefreshSkipped, nil
		}
		if err != nil {
			return "", fmt.Errorf("refresh session %s…: store: %w", short, err)
		}
	}
}

// refreshRevoke ends a session the IdP no longer vouches for and records why.
func (h *Handler) refreshRevoke(ctx context.Context, s *session.Session, why string) error {
	if err := h.revokeSession(ctx, s.ID, s.ExpiresAt, KindRefresh); err != nil {
		return err
	}
	h.record(ctx, h.idpEvent(sessionEvent(events.KindSessionRevoked, s), events.SourceRefresh, why))
	return nil
}

// overridden reports whether an administrator's groups are in force for sub.
func (h *Handler) overridden(ctx context.Context, sub string) bool {
	if h.opts.Groups == nil {
		return false
	}
	_, ok, err := h.opts.Groups.GroupsOverride(ctx, sub)
	if err != nil {
		h.log.Warn("refresh: cannot read the admin group override; leaving groups unchanged", "sub", sub, "err", err)
		return true
	}
	return ok
}

// sameSet compares group lists ignoring order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
