// Package echoserver is the echo backend's handler, separate from its main so
// tests and the harness can decode exactly what it sends.
package echoserver

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
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
}

// Options tune the handler.
type Options struct {
	// HTML answers requests that accept text/html with a page (the demo app).
	HTML bool
}

// IdentityPrefixes are the header name prefixes the demo page highlights.
var IdentityPrefixes = []string{"x-auth-", "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "remote-", "x-remote-"}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>edgepass demo app</title>
<style>body{font-family:sans-serif;max-width:44em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.id{background:#eef8ee}</style>
</head><body>
<h1>edgepass demo app</h1>
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
			_ = page.Execute(w, map[string]any{"Identity": ident, "All": all, "Method": r.Method, "Path": r.URL.Path})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rec)
	})
}
