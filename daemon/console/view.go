package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// view is what every template gets. Nothing in it is a secret (the admin
// API answers without tokens, refresh tokens or private keys) except on
// the page showing a new service token, the once it is shown.
type view struct {
	Title    string
	Nav      string // the active menu entry
	Message  string
	Link     string
	LinkText string
	// Done is a message after a change; Error one after a refused change.
	Done  string
	Error string
	// Admin is the signed-in administrator (nil on sign-in pages); CSRF the
	// token every form carries.
	Admin *adminSession
	CSRF  string
	Now   time.Time
	Data  any
}

// pageNames are the templates in templates/, each with layout.html.
var pageNames = []string{"message", "overview", "users", "user", "session", "confirm", "groups", "edges", "keys", "events", "tokens", "tokencreated"}

var funcs = template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": strings.Join,
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
}

// ago renders how long before now t was.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).Funcs(template.FuncMap{"ago": ago}).
			ParseFS(templateFS, "templates/layout.html", "templates/partials.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page; a rendering failure is logged and answered 500
// without detail.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, s *adminSession, name string, v view) {
	v.Admin = s
	if s != nil {
		v.CSRF = s.CSRF
	}
	v.Now = h.now()
	var b bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&b, "layout", v); err != nil {
		h.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error; see the daemon log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail renders an admin API error (its message is safe and useful), or a
// generic one for anything else (logged).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *adminSession, what, back string, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		h.render(w, r, ae.status, s, "message", view{Title: "Could not " + what, Message: ae.msg, Link: back, LinkText: "Back"})
		return
	}
	h.log.Error("console: "+what, "err", err)
	h.render(w, r, http.StatusInternalServerError, s, "message", view{Title: "Could not " + what, Message: "Internal error; see the daemon log.", Link: back, LinkText: "Back"})
}

// doneMessages are the messages after a change (?done=<code>), fixed so
// a link cannot put words on the page.
var doneMessages = map[string]string{
	"session":      "The session was ended at every edge.",
	"user":         "Every session of the user was ended at every edge.",
	"groups":       "The group override is in force at every edge.",
	"cleared":      "The group override was lifted.",
	"rotated":      "A new signing key is current.",
	"revoked":      "The key is distrusted at every edge; the sessions it signed were ended.",
	"tokenrevoked": "The service token was revoked: every edge refuses it.",
	"signedin":     "",
}

func done(r *http.Request) string { return doneMessages[r.URL.Query().Get("done")] }
