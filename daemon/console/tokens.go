package console

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/servicetoken"
	"github.com/edgepass/edgepass/daemon/session"
)

// The Service tokens page: the live service tokens (admin API
// /api/v1/service-tokens), those revoked lately (from the audit trail), a
// form to create one and a confirmation to revoke one. A new token is
// shown once, in the answer to the create form: never in a URL, a log
// line or an event, and the page is not cached.

// tokenRow is one service token on the page.
type tokenRow struct {
	// ID is the token's id (its sid); for a revoked token, only its first
	// 8 characters (what the audit trail keeps).
	ID                string
	Name              string
	Groups, Audiences []string
	Created, Expires  time.Time
	Expired           bool
	// CreatedBy names who created it, when the audit trail still holds
	// the creation.
	CreatedBy string
	// Revoked is the revocation of a revoked token.
	Revoked *events.Event
}

// tokenForm is the create form's input, kept when the daemon refuses it.
type tokenForm struct {
	Name, Groups, Audiences, ExpiresIn, Reason string
}

type tokensData struct {
	Rows []tokenRow
	Form tokenForm
	// MaxLifetime is the longest token lifetime edges accept now: the
	// default and the maximum of Expires in.
	MaxLifetime time.Duration
	// Unavailable: this daemon does not serve /api/v1/service-tokens.
	Unavailable bool
}

// tokensPath is the Service tokens page.
const tokensPath = Prefix + "service-tokens"

// revokedShown bounds the revoked tokens the page lists.
const revokedShown = 20

func (h *Handler) serviceTokens(w http.ResponseWriter, r *http.Request, s *adminSession) {
	h.renderTokens(w, r, s, http.StatusOK, tokenForm{}, "")
}

// renderTokens renders the Service tokens page, with the create form
// holding form and errMsg above it (a refused create).
func (h *Handler) renderTokens(w http.ResponseWriter, r *http.Request, s *adminSession, status int, form tokenForm, errMsg string) {
	d := tokensData{Form: form}
	var l admin.ServiceTokenList
	err := h.get(r, s, []string{"api", "v1", "service-tokens"}, nil, &l)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.status == http.StatusNotFound:
		d.Unavailable = true
	case err != nil:
		h.fail(w, r, s, "list the service tokens", Prefix, err)
		return
	}
	createdBy := map[string]string{}
	for _, e := range h.tokenEvents(r, s, events.KindServiceTokenCreated, events.MaxLimit) {
		createdBy[e.SessionID] = e.Actor + " (" + e.ActorType + ")"
	}
	now := h.now()
	live := map[string]bool{}
	for _, t := range l.Tokens {
		short := session.Short(t.ID)
		live[short] = true
		d.Rows = append(d.Rows, tokenRow{ID: t.ID, Name: t.Username, Groups: t.Groups, Audiences: t.Audiences,
			Created: t.IssuedAt, Expires: t.ExpiresAt, Expired: !now.Before(t.ExpiresAt), CreatedBy: createdBy[short]})
	}
	slices.SortStableFunc(d.Rows, func(a, b tokenRow) int { return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(a.Name, b.Name)) })
	for _, e := range h.tokenEvents(r, s, events.KindServiceTokenRevoked, revokedShown) {
		if live[e.SessionID] {
			continue
		}
		d.Rows = append(d.Rows, tokenRow{ID: e.SessionID, Name: e.User, CreatedBy: createdBy[e.SessionID], Revoked: &e})
	}
	var kl admin.KeyList
	if err := h.get(r, s, []string{"api", "v1", "keys"}, nil, &kl); err == nil {
		d.MaxLifetime = time.Duration(kl.MaxTokenLifetime) * time.Second
	}
	h.render(w, r, status, s, "tokens", view{Title: "Service tokens", Nav: "tokens", Done: done(r), Error: errMsg, Data: d})
}

// tokenEvents returns the newest service-token events of kind (none when
// the audit trail cannot be read: the page shows the tokens anyway).
func (h *Handler) tokenEvents(r *http.Request, s *adminSession, kind string, limit int) []events.Event {
	var p events.Page
	q := url.Values{"kind": {kind}, "limit": {strconv.Itoa(limit)}}
	if err := h.get(r, s, []string{"api", "v1", "events"}, q, &p); err != nil {
		h.log.Debug("console: read service-token events", "kind", kind, "err", err)
		return nil
	}
	return p.Events
}

// createServiceToken handles POST /console/service-tokens/create: the
// answer is the only page that ever shows the token.
func (h *Handler) createServiceToken(w http.ResponseWriter, r *http.Request, s *adminSession) {
	form := tokenForm{
		Name: strings.TrimSpace(r.PostForm.Get("name")), Groups: r.PostForm.Get("groups"), Audiences: r.PostForm.Get("audiences"),
		ExpiresIn: strings.TrimSpace(r.PostForm.Get("expiresIn")), Reason: r.PostForm.Get("reason"),
	}
	req := servicetoken.CreateRequest{Name: form.Name, Groups: splitGroups(form.Groups), Audiences: splitGroups(form.Audiences), ExpiresIn: form.ExpiresIn}
	var c servicetoken.Created
	err := h.call(r, s, form.Reason, http.MethodPost, []string{"api", "v1", "service-tokens"}, nil, req, &c)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusBadRequest {
		h.renderTokens(w, r, s, http.StatusBadRequest, form, ae.msg)
		return
	}
	if err != nil {
		h.fail(w, r, s, "create the service token", tokensPath, err)
		return
	}
	// Every console answer is no-store; this one above all (the token is
	// in it), so it is said here too.
	w.Header().Set("Cache-Control", "no-store")
	h.render(w, r, http.StatusOK, s, "tokencreated", view{Title: "Service token " + c.Name + " created", Nav: "tokens", Data: c})
}

// confirmRevokeToken handles GET /console/service-tokens/revoke?id=.
func (h *Handler) confirmRevokeToken(w http.ResponseWriter, r *http.Request, s *adminSession) {
	id := r.URL.Query().Get("id")
	var l admin.ServiceTokenList
	if err := h.get(r, s, []string{"api", "v1", "service-tokens"}, nil, &l); err != nil {
		h.fail(w, r, s, "list the service tokens", tokensPath, err)
		return
	}
	i := slices.IndexFunc(l.Tokens, func(t session.Session) bool { return t.ID == id })
	if id == "" || i < 0 {
		h.render(w, r, http.StatusNotFound, s, "message", view{Title: "No such service token", Nav: "tokens",
			Message: "No live service token has this id: it may have been revoked or have expired.", Link: tokensPath, LinkText: "Back"})
		return
	}
	t := l.Tokens[i]
	h.render(w, r, http.StatusOK, s, "confirm", view{Title: "Revoke service token " + t.Username + "?", Nav: "tokens",
		Message: "Every edge refuses this token within a second: the scripts and services using it stop working. This cannot be undone; create a new token to replace it.",
		Data: confirmData{Action: tokensPath + "/revoke", Fields: map[string]string{"id": t.ID}, Button: "Revoke the token", Cancel: tokensPath, Danger: true,
			Details: []string{"Name: " + t.Username, "Groups: " + listOrNone(t.Groups), "Audiences: " + listOrNone(t.Audiences),
				"Expires: " + t.ExpiresAt.UTC().Format("2006-01-02 15:04:05Z")}}})
}

// revokeServiceToken handles POST /console/service-tokens/revoke.
func (h *Handler) revokeServiceToken(w http.ResponseWriter, r *http.Request, s *adminSession) {
	id := r.PostForm.Get("id")
	if id == "" {
		h.render(w, r, http.StatusBadRequest, s, "message", view{Title: "Bad request", Message: "No service token named.", Link: tokensPath, LinkText: "Back"})
		return
	}
	var res admin.ServiceTokenRevoked
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodDelete, []string{"api", "v1", "service-tokens", id}, nil, nil, &res); err != nil {
		h.fail(w, r, s, "revoke the service token", tokensPath, err)
		return
	}
	http.Redirect(w, r, tokensPath+"?done=tokenrevoked", http.StatusSeeOther)
}

func listOrNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, ", ")
}
