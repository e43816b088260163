// Package fakeidp is a minimal OpenID Connect provider for tests: discovery,
// an authorize endpoint that signs the configured user in at once, a token
// endpoint with PKCE and refresh tokens, JWKS and userinfo. RS256 ID tokens.
package fakeidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// User is who the provider signs in.
type User struct {
	Subject, Email, Name, Username string
	Groups                         []string
}

// IdP is a running fake provider.
type IdP struct {
	*httptest.Server
	ClientID string
	key      *rsa.PrivateKey

	mu    sync.Mutex
	user  User
	codes map[string]grant
	down  bool
}

type grant struct {
	nonce, challenge, redirect string
}

// Start serves the provider on a random loopback port until the test ends.
func Start(clientID string, u User) *IdP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p := &IdP{ClientID: clientID, key: key, user: u, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	p.Server = httptest.NewServer(mux)
	return p
}

// Issuer is the provider's issuer URL.
func (p *IdP) Issuer() string { return p.URL }

// SetUser changes who signs in next (and what refresh returns).
func (p *IdP) SetUser(u User) {
	p.mu.Lock()
	p.user = u
	p.mu.Unlock()
}

// SetDown makes discovery answer 503 (down) or work again: an IdP outage.
func (p *IdP) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (p *IdP) discovery(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		http.Error(w, "identity provider down", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, map[string]any{
		"issuer":                                p.URL,
		"authorization_endpoint":                p.URL + "/authorize",
		"token_endpoint":                        p.URL + "/token",
		"jwks_uri":                              p.URL + "/jwks",
		"userinfo_endpoint":                     p.URL + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (p *IdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	code := rand.Text()
	p.mu.Lock()
	p.codes[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	p.mu.Unlock()
	u, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := u.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	nonce := ""
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.mu.Lock()
		g, ok := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code"))
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge || r.PostForm.Get("redirect_uri") != g.redirect {
			w.WriteHeader(http.StatusBadRequest)
			writeJSON(w, map[string]string{"error": "invalid_grant"})
			return
		}
		nonce = g.nonce
	case "refresh_token":
	default:
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	writeJSON(w, map[string]any{
		"access_token":  rand.Text(),
		"token_type":    "Bearer",
		"expires_in":    300,
		"refresh_token": rand.Text(),
		"id_token":      p.idToken(nonce),
	})
}

func (p *IdP) idToken(nonce string) string {
	p.mu.Lock()
	u := p.user
	p.mu.Unlock()
	now := time.Now()
	claims := map[string]any{
		"iss": p.URL, "aud": p.ClientID, "sub": u.Subject, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": u.Email, "email_verified": true, "name": u.Name, "preferred_username": u.Username, "groups": u.Groups,
		"sid": "idp-session-" + u.Subject,
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "idp"})
	payload, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (p *IdP) jwks(w http.ResponseWriter, _ *http.Request) {
	pub := p.key.PublicKey
	writeJSON(w, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "idp", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

func (p *IdP) userinfo(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	u := p.user
	p.mu.Unlock()
	writeJSON(w, map[string]any{"sub": u.Subject, "email": u.Email, "name": u.Name, "preferred_username": u.Username, "groups": u.Groups})
}

// Login walks a browser through the daemon's login at daemonURL (no
// redirects followed automatically, cookies carried by hand so Secure
// cookies work over http) and returns the session cookie named cookieName
// and the final response's status and Location.
func Login(daemonURL, rd, cookieName string) (*http.Cookie, *http.Response, error) {
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	jar := map[string]*http.Cookie{}
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		for _, c := range jar {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			jar[c.Name] = c
		}
		return resp, nil
	}
	u := daemonURL + "/login"
	if rd != "" {
		u += "?rd=" + url.QueryEscape(rd)
	}
	resp, err := get(u) // daemon -> IdP authorize
	if err != nil {
		return nil, nil, err
	}
	for hop := 0; hop < 2 && resp.StatusCode == http.StatusFound; hop++ { // IdP -> daemon callback
		resp, err = get(resp.Header.Get("Location"))
		if err != nil {
			return nil, nil, err
		}
		if c := jar[cookieName]; c != nil {
			return c, resp, nil
		}
	}
	return nil, resp, &LoginError{Status: resp.StatusCode}
}

// LoginError is a login that ended without a session cookie.
type LoginError struct{ Status int }

func (e *LoginError) Error() string {
	return "login ended with status " + http.StatusText(e.Status) + " and no session cookie"
}
