package harness

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func lbGet(t *testing.T, rawURL string) (int, string) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestLoadBalancerRoundRobinSkipsDeadReplicaAndForwardsUnchanged(t *testing.T) {
	replica := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Set-Cookie", "c="+name)
			w.Header().Set("Location", "/somewhere")
			_, _ = io.WriteString(w, name+" "+r.Host+" "+r.Header.Get("X-Forwarded-Host")+" "+r.URL.RawQuery)
		}))
	}
	a, b := replica("a"), replica("b")
	defer b.Close()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := StartLoadBalancer(port, []LBBackend{{Name: "a", Addr: strings.TrimPrefix(a.URL, "http://")}, {Name: "b", Addr: strings.TrimPrefix(b.URL, "http://")}})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()

	var served []string
	for i := 0; i < 4; i++ {
		_, body := lbGet(t, lb.URL+"/login?rd=x")
		served = append(served, strings.Fields(body)[0])
	}
	if strings.Join(served, "") != "abab" {
		t.Fatalf("round robin served %v, want a b a b (no stickiness)", served)
	}
	req, _ := http.NewRequest("GET", lb.URL+"/verify?q=1", nil)
	req.Header.Set("X-Forwarded-Host", "app.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "127.0.0.1:" + strings.Split(lb.URL, ":")[2] + " app.example.com q=1"; !strings.HasSuffix(string(body), want) {
		t.Fatalf("forwarded request changed: got %q, want suffix %q", body, want)
	}
	if resp.Header.Get("Set-Cookie") == "" || resp.Header.Get("Location") != "/somewhere" {
		t.Fatalf("response headers not passed back: %v", resp.Header)
	}

	a.Close() // replica a dies: every request lands on b
	for i := 0; i < 4; i++ {
		code, body := lbGet(t, lb.URL+"/callback?state=s")
		if code != http.StatusOK || !strings.HasPrefix(body, "b ") {
			t.Fatalf("with a dead, request %d got %d %q, want b", i, code, body)
		}
	}
	rec, ok := lb.Find("/callback", func(q url.Values) bool { return q.Get("state") == "s" })
	if !ok || rec.Backend != "b" {
		t.Fatalf("record of the callback: %+v", rec)
	}
	if err := lb.Pin("b"); err != nil {
		t.Fatal(err)
	}
	if _, body := lbGet(t, lb.URL+"/x"); !strings.HasPrefix(body, "b ") {
		t.Fatalf("pinned to b, got %q", body)
	}
	b.Close()
	if code, _ := lbGet(t, lb.URL+"/x"); code != http.StatusBadGateway {
		t.Fatalf("no replica alive: %d, want 502", code)
	}
}
