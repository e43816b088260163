package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/events"
)

// maxResponse bounds what the CLI reads from the admin API.
const maxResponse = 32 << 20

// client calls the admin API.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
	// reason (--reason) goes with every change, into the audit trail.
	reason string
}

func newClient(base *url.URL, token string) *client {
	return &client{base: base, token: token, http: &http.Client{
		Timeout: 30 * time.Second,
		// The token must not follow a redirect to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// apiError is a non-2xx answer, phrased with what to do about it.
type apiError struct {
	base   string
	status int
	msg    string
	hint   string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("admin API at %s: %d %s", e.base, e.status, e.msg)
	if e.hint != "" {
		s += "; " + e.hint
	}
	return s
}

// call sends method to the path made of segs (each escaped on its own, so a
// subject like "a/b" stays one segment) with body (JSON-encoded when not
// nil) and returns the raw JSON answer. notFound is the hint for a 404.
func (c *client) call(ctx context.Context, method string, segs []string, query url.Values, body any, notFound string) ([]byte, error) {
	u := *c.base
	escaped := make([]string, len(segs))
	for i, s := range segs {
		escaped[i] = url.PathEscape(s)
	}
	u.Path = strings.TrimSuffix(c.base.Path, "/") + "/" + strings.Join(segs, "/")
	u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + "/" + strings.Join(escaped, "/")
	if c.reason != "" && method != http.MethodGet {
		query = cloneValues(query)
		query.Set("reason", c.reason)
	}
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build request to %s: %w", c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set(admin.SourceHeader, events.SourceCLI) // a label for the audit trail; the actor is the token
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s: %v; check --admin.url and that `edgepass serve` is running", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: reading the answer: %w", c.base, err)
	}
	isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	if resp.StatusCode/100 == 2 {
		if !isJSON {
			return nil, &apiError{base: c.base.String(), status: resp.StatusCode, msg: "answer is not JSON", hint: "is --admin.url the admin listener (admin.listen)?"}
		}
		return data, nil
	}
	e := &apiError{base: c.base.String(), status: resp.StatusCode, msg: http.StatusText(resp.StatusCode)}
	var body2 struct {
		Error string `json:"error"`
	}
	if isJSON && json.Unmarshal(data, &body2) == nil && body2.Error != "" {
		e.msg = sanitize(body2.Error)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		e.msg = "unauthorized"
		e.hint = "check --admin.token (it must equal the daemon's admin.token or one of admin.tokens)"
	case resp.StatusCode == http.StatusForbidden:
		e.hint = "this token is read-only (admin.tokens readOnly); use a read-write token for changes"
	case resp.StatusCode == http.StatusNotFound && isJSON && notFound != "":
		e.hint = notFound
	case !isJSON:
		e.hint = "is --admin.url the admin listener (admin.listen)?"
	case resp.StatusCode >= 500:
		e.hint = "see the daemon's log"
	}
	return nil, e
}

// unwrapURLError drops the "Get <url>:" prefix the error already repeats.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
