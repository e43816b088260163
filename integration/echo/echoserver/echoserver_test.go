package echoserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// get sends GET target (path and query), with header, to a server running
// Handler(o), over the network as Traefik does.
func get(t *testing.T, o Options, target string, header http.Header) *http.Response {
	t.Helper()
	srv := httptest.NewServer(Handler(o))
	t.Cleanup(srv.Close)
	req, err := http.NewRequest("GET", srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestHandlerEchoesHeadersVerbatim(t *testing.T) {
	resp := get(t, Options{}, "/app/x?y=1", http.Header{
		"x_auth_user": {"mallory"},
		"X-Auth-User": {"alice"},
		"Accept":      {"text/html"},
	})
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q, want JSON when -html is off", ct)
	}
	var got Request
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Path != "/app/x" || got.Query != "y=1" || got.Method != "GET" {
		t.Fatalf("request line not echoed: %+v", got)
	}
	if v := got.Headers["X-Auth-User"]; len(v) != 1 || v[0] != "alice" {
		t.Fatalf("X-Auth-User = %v", v)
	}
	found := false
	for name, v := range got.Headers {
		if strings.EqualFold(name, "x_auth_user") && len(v) == 1 && v[0] == "mallory" {
			found = true
		}
	}
	if !found {
		t.Fatalf("underscored header not echoed: %v", got.Headers)
	}
}

func TestHandlerHTMLEscapesHeaderValues(t *testing.T) {
	resp := get(t, Options{HTML: true}, "/", http.Header{
		"Accept":      {"text/html"},
		"X-Auth-User": {"<script>alert(1)</script>"},
	})
	buf := new(strings.Builder)
	if _, err := io.Copy(buf, resp.Body); err != nil {
		t.Fatal(err)
	}
	body := buf.String()
	if strings.Contains(body, "<script>alert(1)") {
		t.Fatal("header value rendered unescaped")
	}
	if !strings.Contains(body, "X-Auth-User") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatalf("identity header missing from page: %s", body)
	}
}
