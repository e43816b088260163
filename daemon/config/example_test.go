package config

import (
	"testing"
	"time"
)

// TestExampleFile keeps daemon/examples/edgepass.yml loadable and in line
// with docs/contracts.md.
func TestExampleFile(t *testing.T) {
	c, err := Load([]string{"--configFile=../examples/edgepass.yml"}, []string{"EDGEPASS_ADMIN_TOKEN=" + testToken})
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	want(t, "publicURL", c.PublicURL, "http://127.0.0.1:8000")
	want(t, "listen", c.Listen, "127.0.0.1:8000")
	want(t, "issuer", c.OIDC.Issuer, "http://127.0.0.1:9000")
	want(t, "clientID", c.OIDC.ClientID, "edgepass")
	want(t, "lifetime", time.Duration(c.Session.Lifetime), 12*time.Hour)
	want(t, "allowedDomains", c.Session.AllowedDomains, []string{"127.0.0.1", "localhost", "*.example.com"})
	want(t, "embedded", c.NATS.Embedded.Enabled, true)
	want(t, "nats listen", c.NATS.Embedded.Listen, "127.0.0.1:4222")
	want(t, "admin listen", c.Admin.Listen, "127.0.0.1:8001")
	want(t, "loginRateLimit", c.Session.LoginRateLimit, 60)
	want(t, "loginRateBurst", c.Session.LoginRateBurst, 20)
	want(t, "trustedProxies", c.TrustedProxies, []string{"127.0.0.0/8", "::1/128"})
	if _, err := Load([]string{"--configFile=../examples/edgepass.yml"}, nil); err == nil {
		t.Error("example loads without an admin token; it must require one")
	}
}
