package returnurl

import (
	"net/url"
	"strings"
	"testing"
)

func testPolicy(t testing.TB) *Policy {
	p, err := New([]string{"app.example.com", "127.0.0.1", "*.example.org", "[::1]", "LocalHost"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	p := testPolicy(t)
	cases := []struct {
		in, want string
	}{
		{"https://app.example.com/", "https://app.example.com/"},
		{"HTTPS://App.Example.com/a?b=1#c", "https://App.Example.com/a?b=1#c"},
		{"http://127.0.0.1:8000/x", "http://127.0.0.1:8000/x"},
		{"http://[::1]:8080/", "http://[::1]:8080/"},
		{"http://localhost/", "http://localhost/"},
		{"https://a.b.example.org/%2F%2Fevil.com", "https://a.b.example.org/%2F%2Fevil.com"},
		{"https://app.example.com", "https://app.example.com"},
		{"https://app.example.com?x=https://evil.com", "https://app.example.com?x=https://evil.com"},
		// refused
		{"https://example.org/", ""},
		{"https://app.example.com@evil.com/", ""},
		{"https://evil.com\\@app.example.com/", ""},
		{"//app.example.com/", ""},
		{"https://app.example.com:0/", ""},
		{"https://app.example.com:65536/", ""},
		{"https://app.example.com:+80/", ""},
		{"https://app.example.com:80:80/", ""},
		{"https://app.example.com%00/", ""},
		{"https://app.example.com/\u00e9", ""},
		{"https://_.example.org/", "https://_.example.org/"},
		{"https://.example.org/", ""},
		{"https://a..example.org/", ""},
		{"vbscript:msgbox", ""},
		{"https://app.example.com./", ""},     // a trailing dot is another host to a browser's cookie jar
		{"https://example.org.evil.net/", ""}, // a prefix match is not enough
		{"https://evilexample.org/", ""},      // a suffix without the dot is not a subdomain
		{"javascript://app.example.com/%0aalert(1)", ""},
		{"https://" + strings.Repeat("a", 5000) + ".example.org/", ""},
	}
	for _, c := range cases {
		got, ok := p.Check(c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Check(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

func TestNewRejectsBadEntries(t *testing.T) {
	for _, d := range []string{"*", "*.com", "https://example.com", "example.com:443", "example.com/path", "*.*.example.com", "ex ample.com", "a@b.com", ""} {
		if _, err := New([]string{d}); err == nil {
			t.Errorf("entry %q accepted", d)
		}
	}
}

// FuzzReturnURL checks that whatever Check accepts is an http(s) URL without
// user info to an allowed host, that browsers and net/url agree on its host,
// and that checking the result again accepts it unchanged.
func FuzzReturnURL(f *testing.F) {
	for _, s := range []string{
		"https://app.example.com/", "http://127.0.0.1:8000/x?y#z", "https://a.example.org/", "//evil.com",
		"https://app.example.com@evil.com", "https://evil.com\\@app.example.com", "javascript:alert(1)",
		"https:evil.com", "https://app.example.com%2eevil.com", "http://[::1]:80/", "https://app.example.com.",
		"https://app.example.com\x00.evil.com", "HTTP://APP.EXAMPLE.COM", "https://x.example.org:443/../..//evil.com",
	} {
		f.Add(s)
	}
	p := testPolicy(f)
	f.Fuzz(func(t *testing.T, raw string) {
		out, ok := p.Check(raw)
		if !ok {
			if out != "" {
				t.Fatalf("refused %q but returned %q", raw, out)
			}
			return
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("accepted %q -> %q which does not parse: %v", raw, out, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.User != nil || u.Host == "" || u.Opaque != "" {
			t.Fatalf("accepted %q -> %q: scheme %q user %v host %q", raw, out, u.Scheme, u.User, u.Host)
		}
		host := strings.ToLower(u.Hostname())
		if !(host == "app.example.com" || host == "127.0.0.1" || host == "::1" || host == "localhost" ||
			strings.HasSuffix(host, ".example.org") && len(host) > len(".example.org")) {
			t.Fatalf("accepted %q -> host %q is not allowed", raw, host)
		}
		if strings.ContainsAny(out, "\\@ \t\r\n") && strings.Index(out, "@") < strings.Index(out, host) {
			t.Fatalf("accepted %q -> %q has user info markers", raw, out)
		}
		for i := 0; i < len(out); i++ {
			if out[i] < 0x21 || out[i] >= 0x7f || out[i] == '\\' {
				t.Fatalf("accepted %q -> %q contains byte %#x", raw, out, out[i])
			}
		}
		// The authority a browser sees is exactly the host net/url saw.
		rest := out[strings.Index(out, "//")+2:]
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			rest = rest[:i]
		}
		if rest != u.Host {
			t.Fatalf("accepted %q -> authority %q but host %q", raw, rest, u.Host)
		}
		again, ok := p.Check(out)
		if !ok || again != out {
			t.Fatalf("Check not idempotent: %q -> %q -> %q, %v", raw, out, again, ok)
		}
	})
}
