package oidcflow

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/edgepass/edgepass/daemon/session"
)

// refreshSession against stubs of the IdP (stub_test.go): each answer the
// IdP can give, and what it does to the session, the edges and the store.
func TestRefreshAppliesTheIdPsAnswer(t *testing.T) {
	forged := verifierFunc(func(context.Context, string) (*oidc.IDToken, error) {
		return nil, errors.New("oidc: failed to verify signature")
	})
	withGroups := func(sub string, groups ...string) func(t *testing.T) (*oauth2.Token, error) {
		return func(t *testing.T) (*oauth2.Token, error) {
			return tokenResponse(idToken(t, sub, "", map[string]any{"groups": groups})), nil
		}
	}
	tests := []struct {
		name     string
		opts     func(o *Options)
		verifier idTokenVerifier // nil: the stub's go-oidc verifier
		answer   func(t *testing.T) (*oauth2.Token, error)
		// wantOutcome "" expects an error containing wantErr, and the
		// session as it was (but for RefreshedAt): not revoked, no new tokens.
		wantOutcome string
		wantErr     string
		wantGroups  []string // stored, when the session stays
		wantFact    bool     // the new groups were published to the edges
	}{
		{
			name: "the IdP refuses the refresh token: revoked",
			answer: func(*testing.T) (*oauth2.Token, error) {
				return nil, &oauth2.RetrieveError{ErrorCode: "invalid_grant"}
			},
			wantOutcome: RefreshRevoked,
		},
		{
			name:    "the IdP is down: kept, an error",
			answer:  func(*testing.T) (*oauth2.Token, error) { return nil, errors.New("connection refused") },
			wantErr: "at the IdP: connection refused",
		},
		{
			name:     "forged ID token: kept, an error",
			verifier: forged,
			answer:   withGroups("alice", "dev", "ops"),
			wantErr:  "ID token rejected",
		},
		{
			name:    "ID token naming another user: kept, an error",
			answer:  withGroups("mallory", "dev", "ops"),
			wantErr: "names another subject",
		},
		{
			name:        "groups changed at the IdP: published and stored",
			answer:      withGroups("alice", "dev", "ops"),
			wantOutcome: RefreshGroupsChanged, wantGroups: []string{"dev", "ops"}, wantFact: true,
		},
		{
			name:        "groups the same: new tokens stored",
			answer:      withGroups("alice", "dev"),
			wantOutcome: RefreshUnchanged, wantGroups: []string{"dev"},
		},
		{
			name:        "no ID token and no userinfo: groups left alone",
			answer:      func(*testing.T) (*oauth2.Token, error) { return tokenResponse(""), nil },
			wantOutcome: RefreshUnchanged, wantGroups: []string{"dev"},
		},
		{
			name:        "an administrator's override in force: IdP groups not published",
			opts:        func(o *Options) { o.Groups = fakeOverrides{"alice": {"admins"}} },
			answer:      withGroups("alice", "dev", "ops"),
			wantOutcome: RefreshUnchanged, wantGroups: []string{"dev"},
		},
		{
			name:        "no longer in a required group: revoked",
			opts:        func(o *Options) { o.RequiredGroups = []string{"dev"} },
			answer:      withGroups("alice", "ops"),
			wantOutcome: RefreshRevoked,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newStubEnv(t, tc.opts)
			if tc.verifier != nil {
				e.p.verifier = tc.verifier
			}
			var answered *oauth2.Token
			e.p.refresher = refresherFunc(func(_ context.Context, rt string) (*oauth2.Token, error) {
				if rt != "refresh-1" {
					t.Errorf("refreshed with %q, want the session's refresh token", rt)
				}
				tok, err := tc.answer(t)
				answered = tok
				return tok, err
			})
			now := time.Now().Truncate(time.Second)
			old := session.Session{ID: session.NewID(), Subject: "alice", Username: "alice", Groups: []string{"dev"},
				IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour), RefreshToken: "refresh-1", IDToken: "id-token-1"}
			if err := e.store.Put(context.Background(), &old); err != nil {
				t.Fatal(err)
			}

			outcome, err := e.h.refreshSession(context.Background(), e.p, old.ID)

			if tc.wantOutcome == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("outcome %q, err %v; want an error containing %q", outcome, err, tc.wantErr)
				}
			} else if err != nil || outcome != tc.wantOutcome {
				t.Errorf("outcome %q, err %v; want %q", outcome, err, tc.wantOutcome)
			}
			s, _, getErr := e.store.Get(context.Background(), old.ID)
			revoked := slices.Contains(e.edge.revokedSIDs(), old.ID)
			if tc.wantOutcome == RefreshRevoked {
				if !revoked || !errors.Is(getErr, session.ErrNotFound) || e.metrics.revoked[KindRefresh] != 1 {
					t.Errorf("revoked at the edges %v, store %v, revocations %d; want revoked and deleted", revoked, getErr, e.metrics.revoked[KindRefresh])
				}
				return
			}
			if revoked || getErr != nil {
				t.Fatalf("session revoked %v, store %v; want it kept", revoked, getErr)
			}
			if s.RefreshedAt.IsZero() {
				t.Error("RefreshedAt not written: another replica could spend the refresh token again")
			}
			// Kept after an error: as it was. Refreshed: the IdP's new
			// tokens (its ID token only when it sent one).
			wantRT, wantID, wantGroups := old.RefreshToken, old.IDToken, old.Groups
			if tc.wantOutcome != "" {
				wantRT, wantGroups = answered.RefreshToken, tc.wantGroups
				if raw, _ := answered.Extra("id_token").(string); raw != "" {
					wantID = raw
				}
			}
			if s.RefreshToken != wantRT || s.IDToken != wantID || !slices.Equal(s.Groups, wantGroups) {
				t.Errorf("stored refresh token %q, ID token %.12q…, groups %q; want %q, %.12q…, %q", s.RefreshToken, s.IDToken, s.Groups, wantRT, wantID, wantGroups)
			}
			if fact, published := e.edge.groups["alice"]; published != tc.wantFact || tc.wantFact && !slices.Equal(fact, tc.wantGroups) {
				t.Errorf("groups published %v %q, want %v", published, fact, tc.wantFact)
			}
		})
	}
}
