package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

// Browser is an HTTP client that behaves like a browser where edgepass cares:
// a cookie jar, `Accept: text/html` on navigations, redirects followed one
// hop at a time (each hop recorded), and the provider's sign-in, consent and
// sign-out forms filled in.
type Browser struct {
	Jar    *cookiejar.Jar
	Client *http.Client
	// ProviderIssuer marks pages of the OIDC provider (where forms are filled).
	ProviderIssuer string
	// MaxHops bounds redirect chains.
	MaxHops int
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(providerIssuer string) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{
		Jar: jar,
		Client: &http.Client{
			Jar:           jar,
			Timeout:       15 * time.Second,
			CheckRedirect: noRedirects,
		},
		ProviderIssuer: providerIssuer,
		MaxHops:        25,
	}
}

// Hop is one request of a navigation.
type Hop struct {
	Method   string
	URL      string
	Status   int
	Location string
	// SetCookie holds the raw Set-Cookie headers of the response.
	SetCookie []string
}

func (h Hop) String() string {
	s := fmt.Sprintf("%s %s -> %d", h.Method, h.URL, h.Status)
	if h.Location != "" {
		s += " Location: " + h.Location
	}
	return s
}

// Page is where a navigation ended.
type Page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   []byte
	Hops   []Hop
}

// Trace renders the hops for error messages.
func (p *Page) Trace() string {
	var b strings.Builder
	for i, h := range p.Hops {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, h)
	}
	return b.String()
}

// Forms parses the page's forms.
func (p *Page) Forms() []*Form { return ParseForms(string(p.Body), p.URL) }

// OnProvider reports whether the page was served by the OIDC provider.
func (b *Browser) OnProvider(p *Page) bool {
	return b.ProviderIssuer != "" && strings.HasPrefix(p.URL.String(), b.ProviderIssuer+"/")
}

// Do sends one request as-is (no redirect following) and reads the body.
func (b *Browser) Do(req *http.Request) (*http.Response, []byte, error) {
	resp, err := b.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s %s: %w", req.Method, req.URL, err)
	}
	return resp, body, nil
}

// NavRequest builds a top-level navigation request (what a browser sends when
// the user follows a link).
func NavRequest(method, rawURL string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, rawURL, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	req.Header.Set("User-Agent", "edgepass-e2e-browser")
	return req, nil
}

// Navigate GETs rawURL like a browser and follows redirects until a page that
// is not a redirect.
func (b *Browser) Navigate(rawURL string) (*Page, error) {
	req, err := NavRequest("GET", rawURL, nil)
	if err != nil {
		return nil, err
	}
	if !IsLoopback(req.URL) {
		return nil, fmt.Errorf("browser: refusing to navigate to %s: the harness only talks to 127.0.0.1", rawURL)
	}
	return b.follow(req, nil)
}

// Submit submits a form (with the named submit button, if any) and follows
// redirects. extra overrides fields.
func (b *Browser) Submit(f *Form, button string, extra url.Values, prev []Hop) (*Page, error) {
	vals := url.Values{}
	for k, v := range f.Fields {
		vals[k] = append([]string(nil), v...)
	}
	for k, v := range extra {
		vals[k] = v
	}
	if button != "" {
		vals.Set(button, f.Buttons[button])
	}
	var req *http.Request
	var err error
	if f.Method == "POST" {
		req, err = NavRequest("POST", f.Action, strings.NewReader(vals.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			// What a browser adds to a form submission: the page's origin
			// and the fetch metadata (the daemon's sign-out requires them).
			if f.Origin != "" {
				req.Header.Set("Origin", f.Origin)
			}
			req.Header.Set("Sec-Fetch-Site", fetchSite(f.Origin, req.URL))
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			req.Header.Set("Sec-Fetch-Dest", "document")
		}
	} else {
		u, perr := url.Parse(f.Action)
		if perr != nil {
			return nil, perr
		}
		u.RawQuery = vals.Encode()
		req, err = NavRequest("GET", u.String(), nil)
	}
	if err != nil {
		return nil, err
	}
	return b.follow(req, prev)
}

// fetchSite is the Sec-Fetch-Site a browser sends for a request to target
// from a page of origin from: same-origin, same-site (same scheme and host,
// another port) or cross-site.
func fetchSite(from string, target *url.URL) string {
	switch f, err := url.Parse(from); {
	case from == "" || err != nil:
		return "none"
	case Origin(f) == Origin(target):
		return "same-origin"
	case strings.EqualFold(f.Scheme, target.Scheme) && strings.EqualFold(f.Hostname(), target.Hostname()):
		return "same-site"
	}
	return "cross-site"
}

func (b *Browser) follow(req *http.Request, hops []Hop) (*Page, error) {
	for {
		resp, body, err := b.Do(req)
		if err != nil {
			return &Page{URL: req.URL, Hops: hops}, fmt.Errorf("browser: %s %s: %w\nhops so far:\n%s", req.Method, req.URL, err, (&Page{Hops: hops}).Trace())
		}
		hop := Hop{Method: req.Method, URL: req.URL.String(), Status: resp.StatusCode, Location: resp.Header.Get("Location"), SetCookie: resp.Header.Values("Set-Cookie")}
		hops = append(hops, hop)
		page := &Page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: body, Hops: hops}
		if resp.StatusCode < 300 || resp.StatusCode > 399 || hop.Location == "" {
			return page, nil
		}
		if len(hops) >= b.MaxHops {
			return page, fmt.Errorf("browser: more than %d redirects:\n%s", b.MaxHops, page.Trace())
		}
		next, err := req.URL.Parse(hop.Location)
		if err != nil {
			return page, fmt.Errorf("browser: bad Location %q: %w", hop.Location, err)
		}
		if next.Scheme != "http" && next.Scheme != "https" {
			// A browser would not follow it either; the caller inspects Hops.
			return page, nil
		}
		if !IsLoopback(next) {
			// Never leave this machine: an open redirect under test must
			// not turn into a request to a real host. The caller sees the
			// Location in the last hop.
			return page, nil
		}
		method := "GET"
		if resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
			if req.Method != "GET" && req.Method != "HEAD" {
				return page, fmt.Errorf("browser: %d redirect of a %s is not replayed by this client", resp.StatusCode, req.Method)
			}
			method = req.Method
		}
		req, err = NavRequest(method, next.String(), nil)
		if err != nil {
			return page, err
		}
	}
}

// IsLoopback reports whether u points at this machine (127.0.0.0/8,
// localhost, ::1).
func IsLoopback(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ErrBadCredentials is returned by SignIn when the provider refused the password.
var ErrBadCredentials = errors.New("provider refused the credentials")

// SignIn navigates to rawURL and, whenever the navigation lands on the
// provider's sign-in or consent form, fills it in (user, password; "Allow")
// and continues, until it lands somewhere else. It returns that page; its
// Hops show the whole journey. LoginShown reports whether credentials were
// asked for.
func (b *Browser) SignIn(rawURL, user, password string) (page *Page, loginShown bool, err error) {
	page, err = b.Navigate(rawURL)
	if err != nil {
		return page, false, err
	}
	return b.CompleteSignIn(page, user, password)
}

// CompleteSignIn is SignIn from page on, where a navigation landed: it
// fills in the provider's sign-in and consent forms, following the
// redirects, until it lands somewhere else, and reports whether
// credentials were asked for.
func (b *Browser) CompleteSignIn(page *Page, user, password string) (*Page, bool, error) {
	loginShown := false
	var err error
	for i := 0; i < 6; i++ {
		if !b.OnProvider(page) || page.Status >= 500 {
			return page, loginShown, nil
		}
		forms := page.Forms()
		switch {
		case FindForm(forms, "login") != nil:
			if loginShown && strings.Contains(string(page.Body), `id="error"`) {
				return page, true, fmt.Errorf("browser: %w for %s:\n%s", ErrBadCredentials, user, page.Trace())
			}
			loginShown = true
			page, err = b.Submit(FindForm(forms, "login"), "", url.Values{"login": {user}, "password": {password}}, page.Hops)
		case FindForm(forms, "consent") != nil:
			page, err = b.Submit(FindForm(forms, "consent"), "", nil, page.Hops)
		default:
			return page, loginShown, nil
		}
		if err != nil {
			return page, loginShown, err
		}
	}
	return page, loginShown, fmt.Errorf("browser: sign-in did not leave the provider after 6 forms:\n%s", page.Trace())
}

// ConfirmProviderLogout submits the provider's "sign out?" form with "yes"
// when page shows it, and returns where that lands.
func (b *Browser) ConfirmProviderLogout(page *Page) (*Page, bool, error) {
	if !b.OnProvider(page) {
		return page, false, nil
	}
	f := FindForm(page.Forms(), "op.logoutForm")
	if f == nil {
		return page, false, nil
	}
	next, err := b.Submit(f, "logout", nil, page.Hops)
	return next, true, err
}

// DaemonSignOutForm is the id of the daemon's sign-out confirmation form
// (GET /logout shows it; only its POST ends the session).
const DaemonSignOutForm = "signout"

// SignOut signs out at the daemon as a person does: it opens logoutURL (the
// daemon's /logout?rd=…), which shows a confirmation page, and submits its
// form from that page, with the Origin and Sec-Fetch-Site a browser sends.
// It returns where that lands: the provider's own sign-out confirmation
// when the daemon does RP-initiated logout (see ConfirmProviderLogout),
// else the return URL. Its Hops show the whole journey.
func (b *Browser) SignOut(logoutURL string) (*Page, error) {
	page, err := b.Navigate(logoutURL)
	if err != nil {
		return page, err
	}
	f := FindForm(page.Forms(), DaemonSignOutForm)
	if f == nil {
		return page, fmt.Errorf("browser: %s showed no sign-out confirmation (form id %q; status %d):\n%s\nbody: %.300s",
			logoutURL, DaemonSignOutForm, page.Status, page.Trace(), page.Body)
	}
	return b.Submit(f, "", nil, page.Hops)
}

// Cookie returns the value of the named cookie the jar would send to rawURL.
func (b *Browser) Cookie(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// QueryParam returns a query parameter of a URL ("" if unparsable).
func QueryParam(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Query().Get(name)
}

// API sends a non-navigation request (fetch/XHR style: Accept JSON), with
// the jar's cookies, without following redirects.
func (b *Browser) API(method, rawURL string, header http.Header) (*http.Response, []byte, error) {
	req, err := apiRequest(method, rawURL, header)
	if err != nil {
		return nil, nil, err
	}
	return b.Do(req)
}

// APIGet sends an API-style GET (Accept: application/json, as fetch or XHR
// do) with header and no cookies, without following redirects, and returns
// the status and the body (up to 4 MiB).
func APIGet(rawURL string, header http.Header, timeout time.Duration) (int, []byte, error) {
	req, err := apiRequest("GET", rawURL, header)
	if err != nil {
		return 0, nil, err
	}
	resp, err := (&http.Client{Timeout: timeout, CheckRedirect: noRedirects}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, body, nil
}

// apiRequest is a non-navigation request: Accept JSON, then header.
func apiRequest(method, rawURL string, header http.Header) (*http.Request, error) {
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	return req, nil
}

// noRedirects is a CheckRedirect that hands the redirect itself back.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
