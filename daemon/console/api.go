package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/edgepass/edgepass/daemon/events"
)

// apiError is a non-2xx answer of the admin API: its message is written
// for operators (it names what was wrong with the input) and shown as is.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

// recorder is the response of an in-process admin API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// call runs one admin API request in process, as the administrator (the
// actor every change is recorded under, with source console and reason),
// and decodes a 2xx answer into out.
func (h *Handler) call(r *http.Request, s *adminSession, reason, method string, segs []string, q url.Values, body, out any) error {
	escaped := make([]string, len(segs))
	for i, seg := range segs {
		escaped[i] = url.PathEscape(seg)
	}
	u := &url.URL{Path: "/" + strings.Join(segs, "/"), RawPath: "/" + strings.Join(escaped, "/"), RawQuery: q.Encode()}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx := events.WithActor(r.Context(), events.Actor{Name: s.Actor(), Type: events.ActorAdmin, Source: events.SourceConsole,
		Reason: events.Clean(reason, events.MaxReason)})
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	h.o.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error == "" {
			e.Error = http.StatusText(rec.status)
		}
		return &apiError{status: rec.status, msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("console: decode %s %s: %w", method, u.Path, err)
	}
	return nil
}

// get is call for reads (no reason).
func (h *Handler) get(r *http.Request, s *adminSession, segs []string, q url.Values, out any) error {
	return h.call(r, s, "", http.MethodGet, segs, q, nil, out)
}
