package console

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
)

// userRow is one user in the users list: their stored sessions folded.
type userRow struct {
	Sub, User, Email, Name string
	Groups                 []string
	Sessions               int
	// LastSeen is the latest sign-in or refresh of any of their sessions:
	// when the daemon last heard of the user (edges do not report use).
	LastSeen time.Time
}

// Label names a user for people: username, else email, else sub.
func (u userRow) Label() string { return session.Label(u.User, u.Email, u.Sub) }

func lastSeen(s session.Session) time.Time {
	if s.RefreshedAt.After(s.IssuedAt) {
		return s.RefreshedAt
	}
	return s.IssuedAt
}

// foldUsers groups sessions by subject; the newest session names the user.
func foldUsers(all []session.Session) []userRow {
	idx := map[string]int{}
	var out []userRow
	for _, s := range all {
		i, ok := idx[s.Subject]
		if !ok {
			i = len(out)
			idx[s.Subject] = i
			out = append(out, userRow{Sub: s.Subject})
		}
		u := &out[i]
		u.Sessions++
		if seen := lastSeen(s); !seen.Before(u.LastSeen) {
			u.LastSeen = seen
			u.User, u.Email, u.Name, u.Groups = s.Username, s.Email, s.Name, s.Groups
		}
	}
	return out
}

// matchUser is the users search: username, email, sub or a group, any case.
func matchUser(u userRow, q string) bool {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return true
	}
	for _, v := range append([]string{u.User, u.Email, u.Sub, u.Name}, u.Groups...) {
		if strings.Contains(strings.ToLower(v), q) {
			return true
		}
	}
	return false
}

func sortUsers(rows []userRow, by string) {
	slices.SortStableFunc(rows, func(a, b userRow) int {
		if by == "name" {
			return cmp.Or(cmp.Compare(strings.ToLower(a.Label()), strings.ToLower(b.Label())), cmp.Compare(a.Sub, b.Sub))
		}
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.Sub, b.Sub))
	})
}

func (h *Handler) sessions(r *http.Request, s *adminSession, sub string) ([]session.Session, error) {
	q := url.Values{}
	if sub != "" {
		q.Set("user", admin.SubPrefix+sub)
	}
	var l admin.SessionList
	err := h.get(r, s, []string{"api", "v1", "sessions"}, q, &l)
	return l.Sessions, err
}

// edgeRow is an edge replica as the console shows it (its heartbeat
// carries the plugin version; older plugins report none).
type edgeRow struct {
	edgepub.EdgeStatus
}

type edgeList struct {
	Edges []edgeRow `json:"edges"`
}

type overviewData struct {
	Users, Sessions        int
	Edges, Synced, Stale   int
	SigningKey, AnchorID   string
	Keys                   int
	Recent                 []events.Event
	MaxTokenLifetime       time.Duration
	EdgesUnknown, KeysFail bool
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *adminSession) {
	var d overviewData
	all, err := h.sessions(r, s, "")
	if err != nil {
		h.fail(w, r, s, "list sessions", Prefix, err)
		return
	}
	d.Sessions, d.Users = len(all), len(foldUsers(all))
	var el edgeList
	if err := h.get(r, s, []string{"api", "v1", "edges"}, nil, &el); err == nil {
		d.Edges = len(el.Edges)
		for _, e := range el.Edges {
			if e.Synced {
				d.Synced++
			}
			if e.Stale {
				d.Stale++
			}
		}
	} else {
		d.EdgesUnknown = true
	}
	var kl admin.KeyList
	if err := h.get(r, s, []string{"api", "v1", "keys"}, nil, &kl); err == nil {
		d.SigningKey, d.AnchorID, d.Keys = kl.SigningKeyID, kl.AnchorID, len(kl.Keys)
		d.MaxTokenLifetime = time.Duration(kl.MaxTokenLifetime) * time.Second
	} else {
		d.KeysFail = true
	}
	var p events.Page
	if err := h.get(r, s, []string{"api", "v1", "events"}, url.Values{"limit": {"10"}}, &p); err == nil {
		d.Recent = p.Events
	}
	h.render(w, r, http.StatusOK, s, "overview", view{Title: "Overview", Nav: "overview", Done: done(r), Data: d})
}

type usersData struct {
	Q, Sort string
	Rows    []userRow
	Total   int
}

func (h *Handler) users(w http.ResponseWriter, r *http.Request, s *adminSession) {
	all, err := h.sessions(r, s, "")
	if err != nil {
		h.fail(w, r, s, "list sessions", Prefix, err)
		return
	}
	q, by := r.URL.Query().Get("q"), r.URL.Query().Get("sort")
	if by != "name" {
		by = "seen"
	}
	rows := foldUsers(all)
	d := usersData{Q: q, Sort: by, Total: len(rows)}
	for _, u := range rows {
		if matchUser(u, q) {
			d.Rows = append(d.Rows, u)
		}
	}
	sortUsers(d.Rows, by)
	h.render(w, r, http.StatusOK, s, "users", view{Title: "Users", Nav: "users", Done: done(r), Data: d})
}

type userData struct {
	Row      userRow
	Sessions []session.Session
	Override *admin.Override
	Events   []events.Event
}

// userPage is a user's page: /console/user?sub=<sub>.
func userPage(sub string) string { return Prefix + "user?sub=" + url.QueryEscape(sub) }

func (h *Handler) user(w http.ResponseWriter, r *http.Request, s *adminSession) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		http.Redirect(w, r, Prefix+"users", http.StatusFound)
		return
	}
	list, err := h.sessions(r, s, sub)
	if err != nil {
		h.fail(w, r, s, "list the user's sessions", Prefix+"users", err)
		return
	}
	slices.SortFunc(list, func(a, b session.Session) int { return lastSeen(b).Compare(lastSeen(a)) })
	d := userData{Row: userRow{Sub: sub}, Sessions: list}
	if rows := foldUsers(list); len(rows) == 1 {
		d.Row = rows[0]
	}
	var ol admin.OverrideList
	if err := h.get(r, s, []string{"api", "v1", "groups"}, nil, &ol); err == nil {
		for _, o := range ol.Overrides {
			if o.SubjectKey == token.SubjectKey(sub) {
				d.Override = &o
			}
		}
	}
	d.Events = h.eventsOf(r, s, sub, "")
	for _, e := range d.Events { // no session left: name them from the log
		if d.Row.User == "" && d.Row.Email == "" && (e.User != "" || e.Email != "") {
			d.Row.User, d.Row.Email = e.User, e.Email
		}
	}
	h.render(w, r, http.StatusOK, s, "user", view{Title: d.Row.Label(), Nav: "users", Done: done(r), Data: d})
}

// eventsOf returns recent events about the user sub (and one session of
// theirs when sid is set).
func (h *Handler) eventsOf(r *http.Request, s *adminSession, sub, sid string) []events.Event {
	var p events.Page
	if err := h.get(r, s, []string{"api", "v1", "events"}, url.Values{"user": {sub}, "limit": {"200"}}, &p); err != nil {
		return nil
	}
	var out []events.Event
	for _, e := range p.Events {
		if e.Subject == sub && (sid == "" || e.SessionID == session.Short(sid)) {
			out = append(out, e)
		}
		if len(out) == 25 {
			break
		}
	}
	return out
}

type sessionData struct {
	S      session.Session
	IdP    string
	Events []events.Event
}

func (h *Handler) sessionDetail(w http.ResponseWriter, r *http.Request, s *adminSession) {
	sid := r.URL.Query().Get("sid")
	var sess session.Session
	if err := h.get(r, s, []string{"api", "v1", "sessions", sid}, nil, &sess); err != nil {
		h.fail(w, r, s, "show the session", Prefix+"users", err)
		return
	}
	d := sessionData{S: sess.Public(), IdP: h.o.IdP, Events: h.eventsOf(r, s, sess.Subject, sess.ID)}
	h.render(w, r, http.StatusOK, s, "session", view{Title: "Session " + session.Short(sess.ID), Nav: "users", Data: d})
}

func (h *Handler) endSession(w http.ResponseWriter, r *http.Request, s *adminSession) {
	sid := r.PostForm.Get("sid")
	var res admin.RevokeResult
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodDelete, []string{"api", "v1", "sessions", sid}, nil, nil, &res); err != nil {
		h.fail(w, r, s, "end the session", Prefix+"users", err)
		return
	}
	http.Redirect(w, r, userPage(res.Subject)+"&done=session", http.StatusSeeOther)
}

// confirmData is the confirmation page of a bulk or irreversible action.
type confirmData struct {
	Action  string            // form action
	Fields  map[string]string // hidden fields
	Button  string
	Cancel  string
	Danger  bool
	Details []string
}

func (h *Handler) confirmEndUser(w http.ResponseWriter, r *http.Request, s *adminSession) {
	sub := r.URL.Query().Get("sub")
	list, err := h.sessions(r, s, sub)
	if err != nil {
		h.fail(w, r, s, "list the user's sessions", Prefix+"users", err)
		return
	}
	label := sub
	if rows := foldUsers(list); len(rows) == 1 {
		label = rows[0].Label()
	}
	h.render(w, r, http.StatusOK, s, "confirm", view{Title: "End every session of " + label + "?", Nav: "users",
		Message: "Every edge refuses the tokens this user holds now (" + strconv.Itoa(len(list)) + " stored session(s) are deleted). They may sign in again.",
		Data:    confirmData{Action: Prefix + "user/end", Fields: map[string]string{"sub": sub}, Button: "End all sessions", Cancel: userPage(sub), Danger: true}})
}

func (h *Handler) endUser(w http.ResponseWriter, r *http.Request, s *adminSession) {
	sub := r.PostForm.Get("sub")
	if sub == "" {
		h.render(w, r, http.StatusBadRequest, s, "message", view{Title: "Bad request", Message: "No user named."})
		return
	}
	var res admin.RevokeResult
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodPost, []string{"api", "v1", "users", admin.SubPrefix + sub, "revoke"}, nil, nil, &res); err != nil {
		h.fail(w, r, s, "end the user's sessions", userPage(sub), err)
		return
	}
	http.Redirect(w, r, userPage(sub)+"&done=user", http.StatusSeeOther)
}

type groupsData struct {
	Overrides []admin.Override
	User      string
}

func (h *Handler) groups(w http.ResponseWriter, r *http.Request, s *adminSession) {
	var ol admin.OverrideList
	if err := h.get(r, s, []string{"api", "v1", "groups"}, nil, &ol); err != nil {
		h.fail(w, r, s, "list the group overrides", Prefix, err)
		return
	}
	h.render(w, r, http.StatusOK, s, "groups", view{Title: "Group overrides", Nav: "groups", Done: done(r),
		Data: groupsData{Overrides: ol.Overrides, User: r.URL.Query().Get("user")}})
}

// splitGroups reads a comma- or newline-separated group list.
func splitGroups(v string) []string {
	out := []string{}
	for _, g := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if g = strings.TrimSpace(g); g != "" && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// back is where a groups form returns to: the user's page when it came
// from there, else the groups page.
func back(r *http.Request) string {
	if sub := r.PostForm.Get("back_sub"); sub != "" {
		return userPage(sub)
	}
	return Prefix + "groups"
}

func withDone(path, code string) string {
	if strings.Contains(path, "?") {
		return path + "&done=" + code
	}
	return path + "?done=" + code
}

func (h *Handler) setGroups(w http.ResponseWriter, r *http.Request, s *adminSession) {
	user := strings.TrimSpace(r.PostForm.Get("user"))
	if user == "" {
		h.render(w, r, http.StatusBadRequest, s, "message", view{Title: "Could not set the groups", Message: "Name a user: a username, an email or an IdP sub.", Link: back(r), LinkText: "Back"})
		return
	}
	body := map[string][]string{"groups": splitGroups(r.PostForm.Get("groups"))}
	var res admin.GroupsResult
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodPut, []string{"api", "v1", "users", user, "groups"}, nil, body, &res); err != nil {
		h.fail(w, r, s, "set the groups", back(r), err)
		return
	}
	http.Redirect(w, r, withDone(back(r), "groups"), http.StatusSeeOther)
}

func (h *Handler) clearGroups(w http.ResponseWriter, r *http.Request, s *adminSession) {
	user := r.PostForm.Get("user")
	if user == "" {
		h.render(w, r, http.StatusBadRequest, s, "message", view{Title: "Could not clear the groups", Message: "No user named.", Link: back(r), LinkText: "Back"})
		return
	}
	var res admin.GroupsResult
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodDelete, []string{"api", "v1", "users", user, "groups"}, nil, nil, &res); err != nil {
		h.fail(w, r, s, "clear the groups", back(r), err)
		return
	}
	http.Redirect(w, r, withDone(back(r), "cleared"), http.StatusSeeOther)
}

func (h *Handler) edges(w http.ResponseWriter, r *http.Request, s *adminSession) {
	var el edgeList
	if err := h.get(r, s, []string{"api", "v1", "edges"}, nil, &el); err != nil {
		h.fail(w, r, s, "list the edges", Prefix, err)
		return
	}
	h.render(w, r, http.StatusOK, s, "edges", view{Title: "Edges", Nav: "edges", Data: el.Edges})
}

func (h *Handler) keys(w http.ResponseWriter, r *http.Request, s *adminSession) {
	var kl admin.KeyList
	if err := h.get(r, s, []string{"api", "v1", "keys"}, nil, &kl); err != nil {
		h.fail(w, r, s, "list the keys", Prefix, err)
		return
	}
	h.render(w, r, http.StatusOK, s, "keys", view{Title: "Keys", Nav: "keys", Done: done(r), Data: keysData{kl, time.Duration(kl.MaxTokenLifetime) * time.Second}})
}

type keysData struct {
	admin.KeyList
	Horizon time.Duration
}

func (h *Handler) confirmRotate(w http.ResponseWriter, r *http.Request, s *adminSession) {
	h.render(w, r, http.StatusOK, s, "confirm", view{Title: "Rotate the signing key?", Nav: "keys",
		Message: "A new key signs tokens from now on. Tokens signed by the current key stay valid until they expire; its public key stays published until then.",
		Data:    confirmData{Action: Prefix + "keys/rotate", Button: "Rotate", Cancel: Prefix + "keys"}})
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request, s *adminSession) {
	var res admin.RotateResult
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodPost, []string{"api", "v1", "keys", "rotate"}, nil, nil, &res); err != nil {
		h.fail(w, r, s, "rotate the signing key", Prefix+"keys", err)
		return
	}
	http.Redirect(w, r, Prefix+"keys?done=rotated", http.StatusSeeOther)
}

func (h *Handler) confirmRevokeKey(w http.ResponseWriter, r *http.Request, s *adminSession) {
	kid := r.URL.Query().Get("kid")
	h.render(w, r, http.StatusOK, s, "confirm", view{Title: "Revoke key " + kid + "?", Nav: "keys",
		Message: "Every edge refuses tokens this key signed from now on, and the sessions whose token it signed end. If it is the signing key, a new one is made current first. This cannot be undone.",
		Data:    confirmData{Action: Prefix + "keys/revoke", Fields: map[string]string{"kid": kid}, Button: "Revoke the key", Cancel: Prefix + "keys", Danger: true}})
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request, s *adminSession) {
	var res admin.KeyRevokeResult
	if err := h.call(r, s, r.PostForm.Get("reason"), http.MethodPost, []string{"api", "v1", "keys", r.PostForm.Get("kid"), "revoke"}, nil, nil, &res); err != nil {
		h.fail(w, r, s, "revoke the key", Prefix+"keys", err)
		return
	}
	http.Redirect(w, r, Prefix+"keys?done=revoked", http.StatusSeeOther)
}

type eventsData struct {
	User, Kind, Source string
	Kinds, Sources     []string
	Page               events.Page
	// Live: the newest page, which the script keeps current from Last;
	// Query is the filter as a query string, for the script and paging.
	Live  bool
	Query string
	Older string
}

func (h *Handler) eventLog(w http.ResponseWriter, r *http.Request, s *adminSession) {
	q := r.URL.Query()
	f := url.Values{}
	for _, k := range []string{"user", "kind", "source"} {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			f.Set(k, v)
		}
	}
	api := url.Values{"limit": {"50"}}
	for k, v := range f {
		api[k] = v
	}
	if b := q.Get("before"); b != "" {
		api.Set("before", b)
	}
	var p events.Page
	if err := h.get(r, s, []string{"api", "v1", "events"}, api, &p); err != nil {
		h.fail(w, r, s, "read the event log", Prefix+"events", err)
		return
	}
	d := eventsData{User: f.Get("user"), Kind: f.Get("kind"), Source: f.Get("source"), Kinds: events.Kinds, Sources: events.Sources,
		Page: p, Live: q.Get("before") == "", Query: f.Encode()}
	if p.Next > 0 {
		older := url.Values{"before": {strconv.FormatUint(p.Next, 10)}}
		for k, v := range f {
			older[k] = v
		}
		d.Older = Prefix + "events?" + older.Encode()
	}
	h.render(w, r, http.StatusOK, s, "events", view{Title: "Event log", Nav: "events", Data: d})
}

// eventsJSON serves the live event log's updates: GET
// /console/events.json?after=<seq>&user=&kind=&source= (same origin only:
// it answers no CORS, and needs the console cookie).
func (h *Handler) eventsJSON(w http.ResponseWriter, r *http.Request) {
	s := h.currentSession(r)
	if s == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"sign in to the console"}` + "\n"))
		return
	}
	if !h.inStanding(w, r, s) {
		return
	}
	q := url.Values{"limit": {"100"}}
	for _, k := range []string{"user", "kind", "source", "after"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequestWithContext(events.WithActor(r.Context(), events.Actor{Name: s.Actor(), Type: events.ActorAdmin, Source: events.SourceConsole}),
		http.MethodGet, "/api/v1/events?"+q.Encode(), nil)
	h.o.API.ServeHTTP(rec, req)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(cmp.Or(rec.status, http.StatusOK))
	_, _ = w.Write(rec.body.Bytes())
}
