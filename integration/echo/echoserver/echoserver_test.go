package echoserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerEchoesHeadersVerbatim(t *testing.T) {
	srv := httptest.NewServer(Handler(Options{}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/app/x?y=1", nil)
	req.Header["x_auth_user"] = []string{"mallory"}
	req.Header.Set("X-Auth-User", "alice")
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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
	srv := httptest.NewServer(Handler(Options{HTML: true}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Auth-User", "<script>alert(1)</script>")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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
