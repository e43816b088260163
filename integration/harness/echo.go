package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgepass/edgepass/integration/echo/echoserver"
)

// Echo is a running echo backend.
type Echo struct {
	*Proc
	URL string
}

// StartEcho starts the echo backend on port (html: the demo page); extra
// are more flags (EchoAssertionArgs).
func StartEcho(bin string, port int, html bool, logDir, name string, extra ...string) (*Echo, error) {
	if name == "" {
		name = "echo"
	}
	args := []string{"-listen", hostPort(port)}
	if html {
		args = append(args, "-html")
	}
	args = append(args, extra...)
	u := baseURL(port)
	p, err := startReady(ProcSpec{Name: name, Path: bin, Args: args, LogPath: filepath.Join(logDir, name+".log")},
		[]int{port}, hostPort(port), 10*time.Second, func(ctx context.Context) error {
			return HTTPOK(ctx, u+"/ready", nil)
		})
	if err != nil {
		return nil, err
	}
	return &Echo{Proc: p, URL: u}, nil
}

// Echoed is what the echo backend saw, decoded from its answer.
type Echoed struct {
	echoserver.Request
}

// DecodeEchoed decodes an echo answer; the error quotes the body when it is
// not one (the request did not reach the backend).
func DecodeEchoed(body []byte) (*Echoed, error) {
	var e Echoed
	if err := json.Unmarshal(body, &e.Request); err != nil || e.Headers == nil {
		return nil, fmt.Errorf("response is not from the echo backend (%v): %.300q", err, body)
	}
	return &e, nil
}

// Values returns every value of the header named name, matched
// case-insensitively (Go canonicalizes names it can; others keep their case).
func (e *Echoed) Values(name string) []string {
	var out []string
	for k, v := range e.Headers {
		if strings.EqualFold(k, name) {
			out = append(out, v...)
		}
	}
	return out
}

// Get returns the single value of a header; "" when absent.
func (e *Echoed) Get(name string) string {
	v := e.Values(name)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// NormalizeHeaderName folds a header name the way CGI, PHP and WSGI backends
// do: case-insensitive, with '_' equal to '-'.
func NormalizeHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// HeadersLike returns every received header (name: values) whose normalized
// name equals the normalized name.
func (e *Echoed) HeadersLike(name string) map[string][]string {
	want := NormalizeHeaderName(name)
	out := map[string][]string{}
	for k, v := range e.Headers {
		if NormalizeHeaderName(k) == want {
			out[k] = v
		}
	}
	return out
}

// EchoAssertionArgs makes the echo backend verify identity assertions (for
// AssertionAudience) with the daemon at daemonURL, as a backend using
// package assertion does.
func EchoAssertionArgs(daemonURL string) []string {
	return []string{"-assertion-jwks", daemonURL + "/.well-known/jwks.json", "-assertion-issuer", daemonURL, "-assertion-audience", AssertionAudience}
}
