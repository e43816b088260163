package harness

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// SignOut follows the daemon's sign-out confirmation: GET /logout shows a
// form, and only its POST — with the page's Origin, Sec-Fetch-Site
// same-origin and the form's token — signs out, as the daemon requires.
func TestSignOutSubmitsTheConfirmationForm(t *testing.T) {
	var srv *httptest.Server
	posted := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /logout", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><h1>Sign out?</h1><form id="signout" method="post" action="logout"><input type="hidden" name="csrf" value="tok&amp;en"><input type="hidden" name="rd" value="%s"><button type="submit">Sign out</button></form>`,
			r.URL.Query().Get("rd"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != srv.URL || r.Header.Get("Sec-Fetch-Site") != "same-origin" || r.FormValue("csrf") != "tok&en" {
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		posted++
		http.Redirect(w, r, r.FormValue("rd"), http.StatusFound)
	})
	mux.HandleFunc("GET /bye", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "signed out") })
	srv = httptest.NewServer(mux)
	defer srv.Close()

	b := NewBrowser("")
	page, err := b.SignOut(srv.URL + "/logout?rd=" + url.QueryEscape(srv.URL+"/bye"))
	if err != nil {
		t.Fatal(err)
	}
	if posted != 1 || page.Status != http.StatusOK || page.URL.Path != "/bye" || len(page.Hops) != 3 || page.Hops[1].Method != "POST" {
		t.Fatalf("posted %d, ended at %s (%d):\n%s", posted, page.URL, page.Status, page.Trace())
	}
	// A page without the confirmation form is an error naming it.
	if _, err := b.SignOut(srv.URL + "/bye"); err == nil {
		t.Fatal("SignOut on a page without the form succeeded")
	}
}

func TestFetchSite(t *testing.T) {
	cases := []struct{ from, to, want string }{
		{"http://127.0.0.1:8000", "http://127.0.0.1:8000/logout", "same-origin"},
		{"http://127.0.0.1:9000", "http://127.0.0.1:8000/logout", "same-site"},
		{"http://localhost:8000", "http://127.0.0.1:8000/logout", "cross-site"},
		{"https://127.0.0.1:8000", "http://127.0.0.1:8000/logout", "cross-site"},
		{"", "http://127.0.0.1:8000/logout", "none"},
	}
	for _, c := range cases {
		to, _ := url.Parse(c.to)
		if got := fetchSite(c.from, to); got != c.want {
			t.Errorf("from %q to %s: %s, want %s", c.from, c.to, got, c.want)
		}
	}
}
