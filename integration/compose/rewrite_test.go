package compose

import (
	"strings"
	"testing"
)

func testRewriter() *rewriter {
	return &rewriter{
		urls: map[string]string{
			"http://localhost:8000":         "http://127.0.0.1:1000",
			"http://dex.localhost:5556/dex": "http://127.0.0.1:2000",
			"nats://edgepass:4222":          "nats://127.0.0.1:3000",
		},
		addrs: map[string]string{"0.0.0.0:8000": "127.0.0.1:1000"},
		hosts: map[string]string{"localhost": "127.0.0.1"},
		paths: map[string]string{"/var/lib/edgepass": "/tmp/d", "/edge": "/tmp/e", "/etc/traefik/edge": "/tmp/e"},
	}
}

// The rewrite maps every address and path it knows and refuses the ones it
// does not, so a configuration never keeps pointing at a container.
func TestRewriterValue(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{in: "http://localhost:8000", want: "http://127.0.0.1:1000"},
		{in: "http://localhost:8000/login", want: "http://127.0.0.1:1000/login"},
		{in: "http://dex.localhost:5556/dex", want: "http://127.0.0.1:2000"},
		{in: "http://dex.localhost:5556/dex/auth?x=1", want: "http://127.0.0.1:2000/auth?x=1"},
		{in: "nats://edgepass:4222", want: "nats://127.0.0.1:3000"},
		{in: "0.0.0.0:8000", want: "127.0.0.1:1000"},
		{in: "localhost", want: "127.0.0.1"},
		{in: "/var/lib/edgepass", want: "/tmp/d"},
		{in: "/etc/traefik/edge/traefik.password", want: "/tmp/e/traefik.password"},
		{in: "X-Auth-User", want: "X-Auth-User"},
		{in: "PathPrefix(`/`)", want: "PathPrefix(`/`)"},
		{in: `{{ env "EDGEPASS_TRUST_ANCHOR" }}`, want: `{{ env "EDGEPASS_TRUST_ANCHOR" }}`},
		{in: "http://localhost:80001", err: "no test address for URL"},
		{in: "http://whoami:80", err: "no test address for URL"},
		{in: "0.0.0.0:4222", err: "no test address"},
		{in: "/var/lib/edgepass2", err: "no test path"},
		{in: "/etc/passwd", err: "no test path"},
	}
	r := testRewriter()
	for _, c := range cases {
		got, err := r.value(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: %q, %v; want an error %q", c.in, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestRewriterYAMLAndScript(t *testing.T) {
	r := testRewriter()
	out, err := r.yaml([]byte("publicURL: http://localhost:8000 # c\nlist: [localhost, openid]\nport: 8000\nlocalhost: kept\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"publicURL: http://127.0.0.1:1000 # c", "[127.0.0.1, openid]", "port: 8000", "localhost: kept"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten YAML lacks %q:\n%s", want, out)
		}
	}
	if _, err := r.yaml([]byte("a: http://elsewhere:1\nb: /opt/x\n")); err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("unknown addresses: %v, want both lines named", err)
	}
	script := "cp /daemon/x /edge/x\ncat /etc/traefik/edge/a.pub\necho /edgeless /x/edge\n"
	r.paths["/daemon"] = "/tmp/d"
	want := "cp /tmp/d/x /tmp/e/x\ncat /tmp/e/a.pub\necho /edgeless /x/edge\n"
	if got := r.script(script); got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}
