// Package sameorigin decides whether a browser's request comes from the
// daemon's own pages, the one rule shared by sign-out and the console.
package sameorigin

import (
	"net/http"
	"net/url"
	"strings"
)

// Of is the origin of an absolute URL as browsers write it in Origin:
// lower-case scheme and host, default port left out.
func Of(u *url.URL) string {
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if p := u.Port(); scheme == "https" && p == "443" || scheme == "http" && p == "80" {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	return scheme + "://" + host
}

// Check says why r is not from a page of origin (as built by Of), or ""
// if it is. Browsers send Origin with every POST (and Sec-Fetch-Site), and
// a page can set neither. A present Origin must be origin (a mismatch is
// refused whatever Sec-Fetch-Site says); when Origin is absent or "null"
// (a no-referrer policy, an opaque origin), Sec-Fetch-Site must be
// same-origin.
func Check(r *http.Request, origin string) string {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err == nil && u.Host != "" && u.User == nil && u.Path == "" && u.RawQuery == "" && u.Fragment == "" && Of(u) == origin {
			return ""
		}
		return "Origin is another site"
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return ""
	case "":
		return "neither Origin nor Sec-Fetch-Site"
	}
	return "Sec-Fetch-Site is not same-origin"
}
