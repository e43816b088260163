// Package session holds edgepass sessions: what a login produced, kept in a
// JetStream key-value bucket so that daemon restarts and replicas share them.
package session

import (
	"cmp"
	"time"
)

// Session is one signed-in browser or API client. The refresh token and ID
// token stay in the daemon: they are never sent to the edge, and the Store
// keeps them sealed (package seal) in NATS.
type Session struct {
	// ID is the token's sid claim: 32 random bytes, base64url.
	ID string `json:"id"`
	// Subject is the IdP's sub claim.
	Subject  string   `json:"sub"`
	Username string   `json:"username,omitempty"`
	Email    string   `json:"email,omitempty"`
	Name     string   `json:"name,omitempty"`
	Groups   []string `json:"groups,omitempty"`

	IssuedAt    time.Time `json:"issuedAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	RefreshedAt time.Time `json:"refreshedAt,omitempty"`

	// RefreshToken lets the daemon re-check the user at the IdP.
	RefreshToken string `json:"refreshToken,omitempty"`
	// IDToken is kept for RP-initiated logout (id_token_hint).
	IDToken string `json:"idToken,omitempty"`
	// IdPSessionID is the ID token's sid claim, matched by back-channel logout.
	IdPSessionID string `json:"idpSid,omitempty"`
	// KeyID is the kid of the key that signed the session's current token:
	// revoking that key ends the session.
	KeyID string `json:"kid,omitempty"`
	// Kind is KindService for a service token (a machine credential issued
	// through the admin API), "" for a browser session.
	Kind string `json:"kind,omitempty"`
	// Audiences is a service token's scope: the route audiences
	// (serviceTokens.audiences) that may accept it.
	Audiences []string `json:"audiences,omitempty"`
}

// KindService marks a service token's record.
const KindService = "service"

// Public returns a copy without the secrets, for the admin API and logs.
func (s Session) Public() Session {
	s.RefreshToken = ""
	s.IDToken = ""
	return s
}

// Label names a user for people and the audit trail: username, else email,
// else sub.
func Label(username, email, sub string) string { return cmp.Or(username, email, sub) }
