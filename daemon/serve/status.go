package serve

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/edgepass/edgepass/plugin/token"
)

type statusData struct {
	SignedIn          bool
	User, Email, Name string
	Groups            string
	KeyID             string
	Synced            bool
	// CSRF is the sign-out form's token (oidcflow.PrepareSignOutPage).
	CSRF string
}

var statusTemplate = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgepass</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}dt{font-weight:600}button,a.button{font:inherit;padding:.4rem .9rem}</style>
</head><body>
<h1>edgepass</h1>
{{if .SignedIn}}
<p>You are signed in.</p>
<dl><dt>User</dt><dd>{{.User}}</dd>{{if .Name}}<dt>Name</dt><dd>{{.Name}}</dd>{{end}}{{if .Email}}<dt>Email</dt><dd>{{.Email}}</dd>{{end}}{{if .Groups}}<dt>Groups</dt><dd>{{.Groups}}</dd>{{end}}</dl>
<form id="signout" method="post" action="logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>
{{else}}
<p>You are not signed in.</p>
<p><a class="button" href="login">Sign in</a></p>
{{end}}
<p><small>Edge state {{if .Synced}}synced{{else}}syncing{{end}} · signing key {{.KeyID}}</small></p>
</body></html>
`))

// statusPage is GET /: who is signed in, with sign-in / sign-out buttons.
func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	d := statusData{KeyID: s.ring.KeyID(), Synced: s.watch.State().Synced()}
	if c, ok := s.verify.Identify(r); ok {
		d.signedIn(c)
	}
	d.CSRF = s.oidc.PrepareSignOutPage(w, r)
	_ = statusTemplate.Execute(w, d)
}

// signedIn fills in the user of a verified token, named as /verify's
// X-Auth-User and the plugin's user header name them.
func (d *statusData) signedIn(c *token.Claims) {
	d.SignedIn = true
	d.User = c.User()
	d.Email, d.Name, d.Groups = c.Email, c.Name, strings.Join(c.Groups, ", ")
}
