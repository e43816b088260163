// Package echoserver is the echo backend's handler, separate from its main so
// tests and the harness can decode exactly what it sends.
package echoserver

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/assertion"
)

// Request is what the backend saw; the end-to-end tests decode it to assert
// which headers Traefik and the plugin let through.
type Request struct {
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	// Headers as received (Go canonicalizes names it can; names with unusual
	// characters keep their spelling).
	Headers map[string][]string `json:"headers"`
	// Assertion is the identity assertion this backend verified itself
	// (Options.Verifier) — what a backend that trusts no plain header sees;
	// AssertionError why the one it got did not verify.
	Assertion      *assertion.Claims `json:"assertion,omitempty"`
	AssertionError string            `json:"assertionError,omitempty"`
}

// Options tune the handler.
type Options struct {
	// HTML answers requests that accept text/html with a page (the demo app).
	HTML bool
	// Verifier, when set, verifies the identity assertion in
	// AssertionHeader (default assertion.DefaultHeader) with the daemon's
	// JWKS, as a backend should: the example of package assertion in use.
	Verifier        *assertion.Verifier
	AssertionHeader string
}

// ShowAssertionHeader is the request header that makes the JSON answer
// carry the assertion (in Headers) and its verified claims: a test asks
// for them; without it the answer is the same size with or without an
// assertion, so the benchmark compares the edge, not the echo's output.
const ShowAssertionHeader = "X-Echo-Assertion"

// IdentityPrefixes are the header name prefixes the demo page highlights.
var IdentityPrefixes = []string{"x-auth-", "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "remote-", "x-remote-"}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>edgepass demo app</title>
<style>body{font-family:sans-serif;max-width:44em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.id{background:#eef8ee}</style>
</head><body>
<h1>edgepass demo app</h1>
{{if .Assertion}}<h2>Verified identity</h2>
<p>This backend verified the signed identity assertion edgepass sent (<code>{{.AssertionHeader}}</code>) with the daemon's JWKS, using the Go package <code>github.com/edgepass/edgepass/plugin/assertion</code>: it trusts no plain header.</p>
<table class="id"><tr><th>claim</th><th>value</th></tr>
<tr><td>sub</td><td>{{.Assertion.Subject}}</td></tr><tr><td>user</td><td>{{.Assertion.User}}</td></tr>
<tr><td>email</td><td>{{.Assertion.Email}}</td></tr><tr><td>groups</td><td>{{range $i, $g := .Assertion.Groups}}{{if $i}}, {{end}}{{$g}}{{end}}</td></tr>
<tr><td>kind</td><td>{{.Assertion.Kind}}</td></tr><tr><td>aud</td><td>{{.Assertion.Audience}}</td></tr>
<tr><td>expires</td><td>{{.Expires}}</td></tr></table>
{{else if .AssertionError}}<h2>Identity assertion refused</h2><p>{{.AssertionError}}</p>{{end}}
<p>This page is the backend behind Traefik. Traefik's edgepass plugin checked your session and set these identity headers; anything a client sent under these names was removed first.</p>
<table><tr><th>header</th><th>value</th></tr>
{{range .Identity}}<tr class="id"><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{else}}<tr><td colspan="2">no identity headers (public route?)</td></tr>{{end}}
</table>
<p>Request: {{.Method}} {{.Path}}</p>
<details><summary>all request headers</summary><table>
{{range .All}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</table></details>
</body></html>`))

type row struct{ Name, Value string }

// Handler answers every request with what it received.
func Handler(o Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := Request{
			Method:  r.Method,
			Host:    r.Host,
			Path:    r.URL.Path,
			Query:   r.URL.RawQuery,
			Headers: map[string][]string(r.Header.Clone()),
		}
		header := o.AssertionHeader
		if header == "" {
			header = assertion.DefaultHeader
		}
		if vals := r.Header.Values(header); o.Verifier != nil && len(vals) > 0 {
			if len(vals) != 1 {
				rec.AssertionError = "more than one assertion"
			} else if c, err := o.Verifier.Verify(r.Context(), vals[0]); err != nil {
				rec.AssertionError = err.Error()
			} else {
				rec.Assertion = c
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if o.HTML && strings.Contains(r.Header.Get("Accept"), "text/html") {
			var ident, all []row
			for name, vals := range r.Header {
				rw := row{name, strings.Join(vals, ", ")}
				all = append(all, rw)
				lower := strings.ToLower(name)
				for _, p := range IdentityPrefixes {
					if strings.HasPrefix(lower, p) {
						ident = append(ident, rw)
						break
					}
				}
			}
			sort.Slice(ident, func(i, j int) bool { return ident[i].Name < ident[j].Name })
			sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			expires := ""
			if rec.Assertion != nil {
				expires = time.Unix(rec.Assertion.Expiry, 0).UTC().Format(time.RFC3339) + " (renewed by the edge before then)"
			}
			_ = page.Execute(w, map[string]any{"Identity": ident, "All": all, "Method": r.Method, "Path": r.URL.Path,
				"Assertion": rec.Assertion, "AssertionError": rec.AssertionError, "AssertionHeader": header, "Expires": expires})
			return
		}
		if o.Verifier != nil && r.Header.Get(ShowAssertionHeader) == "" {
			delete(rec.Headers, header)
			rec.Assertion, rec.AssertionError = nil, ""
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rec)
	})
}
