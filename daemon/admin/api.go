package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/base64url"
	"github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/session"
)

// Input limits of the admin API.
const (
	maxBody       = 64 << 10
	maxIDLen      = 256
	maxSubjectLen = 1024
)

// SessionList is the answer of GET /api/v1/sessions.
type SessionList struct {
	Sessions []session.Session `json:"sessions"`
}

// EdgeList is the answer of GET /api/v1/edges.
type EdgeList struct {
	Edges []EdgeStatus `json:"edges"`
}

// RevokeResult is the answer of DELETE /api/v1/sessions/{sid} and
// POST /api/v1/users/{user}/revoke.
type RevokeResult struct {
	Revoked  string `json:"revoked"` // "session" or "user"
	ID       string `json:"sid,omitempty"`
	Subject  string `json:"sub,omitempty"`
	Sessions int    `json:"sessions"` // stored sessions deleted
	// User is the {user} asked for and MatchedBy how it was found (see
	// UserMatch), so a caller sees which sub a name stood for.
	User      string `json:"user,omitempty"`
	MatchedBy string `json:"matchedBy,omitempty"`
}

// GroupsRequest is the body of PUT /api/v1/users/{user}/groups.
type GroupsRequest struct {
	Subject string    `json:"sub,omitempty"`
	Groups  *[]string `json:"groups"`
}

// GroupsResult is the answer of PUT and DELETE /api/v1/users/{user}/groups:
// the sub the groups apply to, the groups set (absent after DELETE), and how
// the user was found.
type GroupsResult struct {
	Subject   string    `json:"sub"`
	Groups    *[]string `json:"groups,omitempty"`
	User      string    `json:"user,omitempty"`
	MatchedBy string    `json:"matchedBy,omitempty"`
}

// UserError is the answer to a user that matches no stored session (404)
// or several subjects (409, with their subs in Candidates).
type UserError struct {
	Error      string   `json:"error"`
	Candidates []string `json:"candidates,omitempty"`
}

// RotateResult is the answer of POST /api/v1/keys/rotate.
type RotateResult struct {
	KeyID string `json:"kid"`
}

// KeyList is the answer of GET /api/v1/keys: the ring without private
// material, and the trust anchor every edge must be configured with.
type KeyList struct {
	// Anchor is the value for the plugin's trustAnchors setting.
	Anchor   string `json:"anchor"`
	AnchorID string `json:"anchorId"`
	// SigningKeyID is the key signing new tokens.
	SigningKeyID string `json:"signingKid"`
	// MaxTokenLifetime (seconds) is the longest token lifetime edges
	// accept: the longest session.lifetime whose tokens can still be live.
	MaxTokenLifetime int64          `json:"maxTokenLifetime"`
	Keys             []keys.KeyInfo `json:"keys"`
}

// KeyRevokeResult is the answer of POST /api/v1/keys/{kid}/revoke.
type KeyRevokeResult struct {
	keys.RevokeResult
	// Sessions is how many sessions whose token the key signed were ended.
	Sessions int `json:"sessions"`
}

// internalError logs the detail and answers a generic 500.
func (h *Handler) internalError(w http.ResponseWriter, what string, err error) {
	h.log.Error("admin API: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error while trying to "+what+"; see the daemon log")
}

// validText refuses empty, oversized and control-character values.
func validText(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request) {
	var m UserMatch
	if r.URL.Query().Has("user") {
		var ok bool
		if m, ok = h.resolveUser(w, r, r.URL.Query().Get("user")); !ok {
			return
		}
	}
	all := m.sessions
	if all == nil {
		var err error
		if all, err = h.opts.Store.List(r.Context(), m.Subject); err != nil {
			h.internalError(w, "list sessions", err)
			return
		}
	}
	out := make([]session.Session, 0, len(all))
	for _, s := range all {
		out = append(out, s.Public())
	}
	writeJSON(w, http.StatusOK, SessionList{Sessions: out})
}

// lookup returns the session named by {sid}, having answered 404 or 500
// itself when it returns nil.
func (h *Handler) lookup(w http.ResponseWriter, r *http.Request) *session.Session {
	sid := r.PathValue("sid")
	if !validText(sid, maxIDLen) {
		writeError(w, http.StatusNotFound, "no such session")
		return nil
	}
	s, _, err := h.opts.Store.Get(r.Context(), sid)
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such session")
		return nil
	}
	if err != nil {
		h.internalError(w, "read session", err)
		return nil
	}
	return s
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	if s := h.lookup(w, r); s != nil {
		writeJSON(w, http.StatusOK, s.Public())
	}
}

func (h *Handler) deleteSession(w http.ResponseWriter, r *http.Request) {
	s := h.lookup(w, r)
	if s == nil {
		return
	}
	revoker := session.Revoker{Edge: h.opts.Edge, Store: h.opts.Store, Metrics: h.opts.Metrics}
	if err := revoker.Revoke(r.Context(), s.ID, s.ExpiresAt, KindAdminSession); err != nil {
		h.internalError(w, "revoke the session", err)
		return
	}
	h.log.Info("admin revoked a session", "sid", session.Short(s.ID), "sub", s.Subject)
	if s.Kind == session.KindService {
		// `edgepass sessions revoke` of a service token: recorded as one.
		h.audit(r, serviceTokenEventOf(events.KindServiceTokenRevoked, s))
	} else {
		h.audit(r, events.Event{Kind: events.KindSessionRevoked, User: s.Username, Email: s.Email, Subject: s.Subject, SessionID: session.Short(s.ID)})
	}
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: "session", ID: s.ID, Subject: s.Subject, Sessions: 1})
}

// How resolveUser found a user (RevokeResult.MatchedBy).
const (
	MatchExplicit = "explicit sub" // "sub:<sub>": taken as is, no lookup
	MatchSub      = "sub"
	MatchUsername = "username"
	MatchEmail    = "email"
)

// SubPrefix marks a user argument as an IdP sub taken as is, for a user
// without a stored session (the edge revocation still covers tokens whose
// session is gone).
const SubPrefix = "sub:"

// UserMatch is the IdP sub an operator's user argument stands for.
type UserMatch struct {
	Subject string
	By      string // Match*
	// sessions are the subject's stored sessions as the lookup read them
	// (nil for an explicit sub, which is not looked up), so a request
	// scans the session bucket once.
	sessions []session.Session
}

// errUnknownUser and ambiguousUser are the lookup failures FindUser reports.
var errUnknownUser = errors.New("no stored session matches")

type ambiguousUser struct {
	by   string
	subs []string
}

func (e *ambiguousUser) Error() string { return "several subjects match by " + e.by }

// FindUser resolves user among the stored sessions: "sub:<sub>" is taken as
// is; otherwise an exact sub, then an exact username, then an email compared
// case-insensitively. Lookups by IdP sub only made `users revoke alice` a
// silent no-op: no token carries the subject "alice".
func FindUser(all []session.Session, user string) (UserMatch, error) {
	if sub, ok := strings.CutPrefix(user, SubPrefix); ok {
		return UserMatch{Subject: sub, By: MatchExplicit}, nil
	}
	// match returns the one subject whose session satisfies eq,
	// errUnknownUser for none, *ambiguousUser for several.
	match := func(by string, eq func(s *session.Session) bool) (UserMatch, error) {
		var subs []string
		for i := range all {
			if eq(&all[i]) && !slices.Contains(subs, all[i].Subject) {
				subs = append(subs, all[i].Subject)
			}
		}
		switch len(subs) {
		case 0:
			return UserMatch{}, errUnknownUser
		case 1:
			own := slices.DeleteFunc(slices.Clone(all), func(s session.Session) bool { return s.Subject != subs[0] })
			return UserMatch{Subject: subs[0], By: by, sessions: own}, nil
		}
		slices.Sort(subs)
		return UserMatch{}, &ambiguousUser{by: by, subs: subs}
	}
	for _, m := range []struct {
		by string
		eq func(s *session.Session) bool
	}{
		{MatchSub, func(s *session.Session) bool { return s.Subject == user }},
		{MatchUsername, func(s *session.Session) bool { return s.Username == user }},
		{MatchEmail, func(s *session.Session) bool { return s.Email != "" && strings.EqualFold(s.Email, user) }},
	} {
		if um, err := match(m.by, m.eq); !errors.Is(err, errUnknownUser) {
			return um, err
		}
	}
	return UserMatch{}, errUnknownUser
}

// resolveUser finds the sub meant by a user argument (FindUser over the
// stored sessions), having answered 400, 404, 409 or 500 itself when ok is
// false.
func (h *Handler) resolveUser(w http.ResponseWriter, r *http.Request, user string) (UserMatch, bool) {
	if !validText(user, maxSubjectLen+len(SubPrefix)) || user == SubPrefix {
		writeError(w, http.StatusBadRequest, "invalid user: want a username, an email or an IdP sub (sub:<sub> to take it as is), at most 1024 bytes without control characters")
		return UserMatch{}, false
	}
	var all []session.Session
	if !strings.HasPrefix(user, SubPrefix) {
		var err error
		if all, err = h.opts.Store.List(r.Context(), ""); err != nil {
			h.internalError(w, "list sessions to find the user", err)
			return UserMatch{}, false
		}
	}
	m, err := FindUser(all, user)
	var amb *ambiguousUser
	switch {
	case errors.As(err, &amb):
		writeJSON(w, http.StatusConflict, UserError{
			Error: fmt.Sprintf("user %q is ambiguous: sessions of %d subjects match by %s: %s; name one with %s<sub>",
				user, len(amb.subs), amb.by, strings.Join(amb.subs, ", "), SubPrefix),
			Candidates: amb.subs,
		})
		return UserMatch{}, false
	case err != nil:
		writeJSON(w, http.StatusNotFound, UserError{Error: fmt.Sprintf(
			"no stored session matches user %q by sub, username or email; to act on an IdP sub without a stored session, name it as %s%s",
			user, SubPrefix, user)})
		return UserMatch{}, false
	}
	if !validText(m.Subject, maxSubjectLen) {
		writeError(w, http.StatusBadRequest, "invalid subject: want a non-empty IdP sub of at most 1024 bytes")
		return UserMatch{}, false
	}
	return m, true
}

// revokeUser refuses every token the user holds now (the edge's
// revoke.user fact) and deletes their stored sessions, so refresh stops too.
// A sub given as sub:<sub> is revoked even without sessions: tokens outlive
// lost state.
func (h *Handler) revokeUser(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	m, ok := h.resolveUser(w, r, user)
	if !ok {
		return
	}
	sub := m.Subject
	if err := h.opts.Edge.RevokeUser(r.Context(), sub, h.now()); err != nil {
		h.internalError(w, "publish the user revocation", err)
		return
	}
	// Read again, not the lookup's sessions: one created since the lookup
	// is deleted too.
	all, err := h.opts.Store.List(r.Context(), sub)
	if err != nil {
		h.internalError(w, "list the user's sessions", err)
		return
	}
	n := 0
	for _, s := range all {
		if err := h.opts.Store.Delete(r.Context(), s.ID); err != nil && !errors.Is(err, session.ErrNotFound) {
			h.internalError(w, "delete the user's sessions", err)
			return
		}
		n++
	}
	h.opts.Metrics.Revoked(KindAdminUser)
	h.log.Info("admin revoked a user", "user", user, "sub", sub, "matchedBy", m.By, "sessions", n)
	h.audit(r, userEvent(events.KindUserRevoked, user, sub, all, fmt.Sprintf("%d stored session(s) deleted", n)))
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: "user", Subject: sub, Sessions: n, User: user, MatchedBy: m.By})
}

func (h *Handler) setGroups(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	var req GroupsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Groups == nil {
		writeError(w, http.StatusBadRequest, `missing "groups": want {"groups":["a","b"]}`)
		return
	}
	groups := *req.Groups
	if len(groups) > edgepub.MaxGroups {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("too many groups: %d, at most %d", len(groups), edgepub.MaxGroups))
		return
	}
	seen := map[string]bool{}
	total := 0
	for i, g := range groups {
		if total += len(g); total > edgepub.MaxGroupBytes {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("groups too large: at most %d bytes of names in total", edgepub.MaxGroupBytes))
			return
		}
		if !validText(g, edgepub.MaxGroupName) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("groups[%d]: want a non-empty name of at most %d bytes without control characters", i, edgepub.MaxGroupName))
			return
		}
		if seen[g] {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("groups[%d]: duplicate %q", i, g))
			return
		}
		seen[g] = true
	}
	m, ok := h.resolveUser(w, r, user)
	if !ok {
		return
	}
	if err := h.opts.Edge.SetGroups(r.Context(), m.Subject, groups); err != nil {
		h.internalError(w, "publish the groups", err)
		return
	}
	h.log.Info("admin set groups", "user", user, "sub", m.Subject, "matchedBy", m.By, "groups", groups)
	h.audit(r, h.userEventOf(r, events.KindGroupsSet, user, m, "groups: "+groupList(groups)))
	writeJSON(w, http.StatusOK, GroupsResult{Subject: m.Subject, Groups: &groups, User: user, MatchedBy: m.By})
}

// clearGroups lifts the subject's group override: tokens fall back to the
// groups they were issued with, and later logins and refreshes use the IdP's.
func (h *Handler) clearGroups(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	m, ok := h.resolveUser(w, r, user)
	if !ok {
		return
	}
	if err := h.opts.Edge.(GroupClearer).ClearGroups(r.Context(), m.Subject); err != nil {
		h.internalError(w, "clear the groups", err)
		return
	}
	h.log.Info("admin cleared the group override", "user", user, "sub", m.Subject, "matchedBy", m.By)
	h.audit(r, h.userEventOf(r, events.KindGroupsCleared, user, m, ""))
	writeJSON(w, http.StatusOK, GroupsResult{Subject: m.Subject, User: user, MatchedBy: m.By})
}

func (h *Handler) rotateKeys(w http.ResponseWriter, r *http.Request) {
	kid, err := h.opts.Keys.Rotate(r.Context())
	if err != nil {
		h.internalError(w, "rotate the signing key", err)
		return
	}
	h.log.Info("admin rotated the signing key", "kid", kid)
	h.audit(r, events.Event{Kind: events.KindKeyRotated, KeyID: kid})
	writeJSON(w, http.StatusOK, RotateResult{KeyID: kid})
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	list := h.opts.Keys.Keys()
	if list == nil {
		list = []keys.KeyInfo{}
	}
	writeJSON(w, http.StatusOK, KeyList{
		Anchor: h.opts.Keys.Anchor(), AnchorID: h.opts.Keys.AnchorID(), SigningKeyID: h.opts.Keys.KeyID(),
		MaxTokenLifetime: int64(h.opts.Keys.Horizon() / time.Second), Keys: list,
	})
}

// ValidKeyID accepts what a kid can be: 1 to 64 base64url characters.
func ValidKeyID(kid string) bool { return base64url.Valid(kid, 1, 64) }

const noSuchKey = "no such key; list them with GET /api/v1/keys (edgepass keys list)"

// revokeKey distrusts a key at every edge (rotating first when it signs
// now) and ends every stored session whose current token it signed. A
// failure part-way is safe to retry: revoking a revoked key only
// republishes and ends the sessions left.
func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	kid := r.PathValue("kid")
	if !ValidKeyID(kid) {
		writeError(w, http.StatusNotFound, noSuchKey)
		return
	}
	res, err := h.opts.Keys.Revoke(r.Context(), kid)
	if errors.Is(err, keys.ErrUnknownKey) {
		writeError(w, http.StatusNotFound, noSuchKey)
		return
	}
	if err != nil {
		h.internalError(w, "revoke the key", err)
		return
	}
	all, err := h.opts.Store.List(r.Context(), "")
	if err != nil {
		h.internalError(w, "list the sessions the revoked key signed (the key is revoked; retry to end them)", err)
		return
	}
	revoker := session.Revoker{Edge: h.opts.Edge, Store: h.opts.Store, Metrics: h.opts.Metrics}
	n := 0
	for _, s := range all {
		if s.KeyID != kid {
			continue
		}
		if err := revoker.Revoke(r.Context(), s.ID, s.ExpiresAt, KindAdminKey); err != nil {
			h.internalError(w, "end the sessions the revoked key signed (the key is revoked; retry to end the rest)", err)
			return
		}
		n++
	}
	h.log.Warn("admin revoked a key", "kid", kid, "wasSigning", res.WasActive, "signingKid", res.SigningKeyID, "sessions", n)
	h.audit(r, events.Event{Kind: events.KindKeyRevoked, KeyID: kid, Detail: keyRevokeDetail(res, n)})
	writeJSON(w, http.StatusOK, KeyRevokeResult{RevokeResult: res, Sessions: n})
}

func (h *Handler) edges(w http.ResponseWriter, r *http.Request) {
	edges := h.opts.Edges.List()
	if edges == nil {
		edges = []EdgeStatus{}
	}
	writeJSON(w, http.StatusOK, EdgeList{Edges: edges})
}

// decodeBody reads one JSON object of at most maxBody bytes with no unknown
// fields and nothing after it; on failure it has answered 400 or 413.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, "cannot read the body")
		}
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+jsonProblem(err))
		return false
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "malformed JSON body: unexpected data after the object")
		return false
	}
	return true
}

// jsonProblem describes a decoding error without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: want %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "cannot decode"
}
