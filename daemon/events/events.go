// Package events is the daemon's audit trail: every change to sessions,
// users, group overrides and keys, with who made it (an administrator in
// the console, a named API token, the user themselves, the IdP), through
// which channel and why. Events live in their own JetStream stream (shared
// by every daemon replica, bounded by age and size) and can also be written
// as JSON lines to stdout for log shippers.
package events

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Event is one entry of the audit trail (docs/contracts.md, "Events").
// It never holds a token, a refresh token, a cookie or key material.
type Event struct {
	// Seq is the event's stream sequence: the cursor of GET
	// /api/v1/events. Zero until the event is stored.
	Seq  uint64    `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	// Kind is what happened (Kind* constants).
	Kind string `json:"kind"`
	// Actor names who did it: an administrator's username (ActorAdmin),
	// an API token's name (ActorToken), the user themselves (ActorUser),
	// the IdP's issuer (ActorIdP) or "edgepass" (ActorDaemon).
	Actor     string `json:"actor"`
	ActorType string `json:"actorType"`
	// Source is the channel (Source* constants).
	Source string `json:"source"`
	// User, Email and Subject name the user the change is about.
	User    string `json:"user,omitempty"`
	Email   string `json:"email,omitempty"`
	Subject string `json:"sub,omitempty"`
	// SessionID is the first 8 characters of the session id, as in the
	// daemon's log: enough to find it, too little to use it.
	SessionID string `json:"sid,omitempty"`
	// KeyID names a signing key (key events).
	KeyID string `json:"kid,omitempty"`
	// Reason is the actor's reason, when one was given.
	Reason string `json:"reason,omitempty"`
	// Detail says more in words (groups set, sessions ended, ...).
	Detail string `json:"detail,omitempty"`
	// Replica is the host name of the daemon replica that recorded it.
	Replica string `json:"replica,omitempty"`
}

// Kinds of events. They are single NATS subject tokens (letters and _).
const (
	KindSessionCreated = "session_created" // a user signed in
	KindSessionRevoked = "session_revoked" // a session ended at every edge
	KindUserRevoked    = "user_revoked"    // every token of a user refused
	KindGroupsSet      = "groups_set"      // an administrator's group override
	KindGroupsCleared  = "groups_cleared"  // an override lifted
	KindGroupsChanged  = "groups_changed"  // the IdP's groups changed at refresh
	KindKeyRotated     = "key_rotated"     // a new signing key is current
	KindKeyRevoked     = "key_revoked"     // a key distrusted at every edge
	KindConsoleSignIn  = "console_signin"  // an administrator signed in to the console
	KindConsoleDenied  = "console_denied"  // a non-administrator tried to
	KindConsoleSignOut = "console_signout"
	// KindServiceTokenCreated and KindServiceTokenRevoked: an administrator
	// issued or revoked a service token (User is its name, Subject
	// "service:<name>", SessionID its id; Detail its audiences, groups and
	// expiry). Never the token itself.
	KindServiceTokenCreated = "service_token_created"
	KindServiceTokenRevoked = "service_token_revoked"
)

// Kinds lists every kind, for filters and documentation.
var Kinds = []string{
	KindSessionCreated, KindSessionRevoked, KindUserRevoked, KindGroupsSet, KindGroupsCleared,
	KindGroupsChanged, KindKeyRotated, KindKeyRevoked, KindConsoleSignIn, KindConsoleDenied, KindConsoleSignOut,
	KindServiceTokenCreated, KindServiceTokenRevoked,
}

// Sources: the channel a change came through.
const (
	SourceConsole     = "console"     // the web console
	SourceAPI         = "api"         // the admin API
	SourceCLI         = "cli"         // the admin API, called by `edgepass` (a label the CLI sends)
	SourceUser        = "user"        // the user's own sign-in or sign-out
	SourceBackchannel = "backchannel" // OIDC back-channel logout from the IdP
	SourceRefresh     = "refresh"     // the periodic re-check at the IdP
	SourceSchedule    = "schedule"    // the daemon's own schedule (keys.rotationInterval)
)

// Sources lists every source.
var Sources = []string{SourceConsole, SourceAPI, SourceCLI, SourceUser, SourceBackchannel, SourceRefresh, SourceSchedule}

// AdminSources are the channels administrators act through.
var AdminSources = []string{SourceConsole, SourceAPI, SourceCLI}

// kindSources restricts the sources of the kinds only an administrator
// causes; a kind not listed may come from any source.
var kindSources = map[string][]string{
	KindServiceTokenCreated: AdminSources,
	KindServiceTokenRevoked: AdminSources,
}

// SourcesOf returns the sources an event of kind may be recorded with:
// every source unless the kind is restricted.
func SourcesOf(kind string) []string {
	if s, ok := kindSources[kind]; ok {
		return s
	}
	return Sources
}

// ValidFor reports whether an event of kind may come from source (both
// known, and source allowed for kind).
func ValidFor(kind, source string) bool {
	return ValidKind(kind) && ValidSource(source) && slices.Contains(SourcesOf(kind), source)
}

// Actor types.
const (
	ActorAdmin  = "admin"  // a person signed in to the console
	ActorToken  = "token"  // a named admin API token
	ActorUser   = "user"   // the user the event is about
	ActorIdP    = "idp"    // the identity provider
	ActorDaemon = "daemon" // edgepass itself
)

// DaemonActor is the Actor of changes the daemon makes on its own.
const DaemonActor = "edgepass"

// Actor is who acts on behalf of a request, carried in its context from
// authentication to the code that records the change.
type Actor struct {
	Name   string
	Type   string // Actor* constants
	Source string // Source* constants
	// Reason is the actor's reason for this request, if given.
	Reason string
}

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// Recorder records events; recording never fails the change it describes
// (the change already happened): a recorder logs what it could not store.
// *Log and Discard implement it.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// Discard records nothing.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Record(context.Context, Event) {}

// Complete fills what the caller left empty: Time, and Actor, ActorType,
// Source and Reason from the actor ctx carries.
func Complete(ctx context.Context, e Event, now time.Time) Event {
	if e.Time.IsZero() {
		e.Time = now.UTC()
	}
	if a, ok := ActorFrom(ctx); ok {
		if e.Actor == "" {
			e.Actor, e.ActorType = a.Name, a.Type
		}
		if e.Source == "" {
			e.Source = a.Source
		}
		if e.Reason == "" {
			e.Reason = a.Reason
		}
	}
	if e.Actor == "" {
		e.Actor, e.ActorType = DaemonActor, ActorDaemon
	}
	e.Reason = Clean(e.Reason, MaxReason)
	return e
}

// Limits on free text in events.
const (
	MaxReason = 500
	maxField  = 1024
)

// Clean drops control characters and cuts s to at most max bytes (on a
// character boundary), so free text cannot forge log lines or grow events.
func Clean(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut]
}

func utf8Start(b byte) bool { return b&0xc0 != 0x80 }

// Filter selects events. Empty fields match everything.
type Filter struct {
	// User matches the user, email, sub or actor, case-insensitively, as a
	// substring: "bob" finds events about bob and events bob caused.
	User string
	// Actor matches the actor exactly (case-insensitive).
	Actor  string
	Kind   string
	Source string
	// Before (a cursor) returns events older than that sequence, newest
	// first; After returns events newer than it, oldest first (to follow
	// the log). With neither: the newest events, newest first.
	Before, After uint64
	// Limit bounds the events returned (default 50, at most MaxLimit).
	Limit int
}

// MaxLimit bounds Filter.Limit.
const MaxLimit = 500

// Match reports whether e passes the filter's user, actor, kind and source.
func (f Filter) Match(e Event) bool {
	if f.Kind != "" && e.Kind != f.Kind {
		return false
	}
	if f.Source != "" && e.Source != f.Source {
		return false
	}
	if f.Actor != "" && !strings.EqualFold(e.Actor, f.Actor) {
		return false
	}
	if u := strings.ToLower(f.User); u != "" {
		found := false
		for _, v := range []string{e.User, e.Email, e.Subject, e.Actor} {
			if strings.Contains(strings.ToLower(v), u) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Page is one answer of Query.
type Page struct {
	Events []Event `json:"events"`
	// Next is the cursor of the following page: with Before (or no
	// cursor), pass it as Before for older events; with After, as After
	// for newer ones. 0 with Before means there are no older events.
	Next uint64 `json:"next,omitempty"`
	// Last is the stream's last sequence when the query ran: a follower
	// starts from it (After=Last) to see only new events.
	Last uint64 `json:"last"`
}

// Querier reads the audit trail; *Log implements it.
type Querier interface {
	Query(ctx context.Context, f Filter) (Page, error)
}

// ValidKind and ValidSource check filter values against the known sets.
func ValidKind(k string) bool   { return slices.Contains(Kinds, k) }
func ValidSource(s string) bool { return slices.Contains(Sources, s) }
