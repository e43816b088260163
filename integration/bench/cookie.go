package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// realisticGroups are 50 group names of the kind a company directory hands
// out (Keycloak/Entra/Authentik naming: teams, apps, environments, roles).
var realisticGroups = []string{
	"staff", "admins", "engineering", "platform-team", "sre-oncall",
	"backend-developers", "frontend-developers", "data-engineering", "ml-research", "security-team",
	"grafana-viewers", "grafana-editors", "prometheus-admins", "argocd-operators", "jenkins-users",
	"k8s-prod-readonly", "k8s-staging-admin", "k8s-dev-admin", "vault-secrets-readers", "vault-pki-operators",
	"gitlab-maintainers", "gitlab-developers", "jira-users", "confluence-editors", "nextcloud-users",
	"vpn-users", "office-berlin", "office-new-york", "contractors-external", "finance-readonly",
	"hr-confidential", "legal-reviewers", "customer-support-tier2", "billing-admins", "release-managers",
	"incident-commanders", "db-postgres-readonly", "db-postgres-admin", "s3-backups-operators", "monitoring-alerts-recipients",
	"design-system-owners", "mobile-ios-developers", "mobile-android-developers", "qa-automation", "product-managers",
	"architecture-board", "change-advisory-board", "pentest-scope-approvers", "soc2-evidence-owners", "all-hands-organizers",
}

// CookieSize is the size of a session token with many groups.
type CookieSize struct {
	Groups int
	// TokenBytes is the compact JWS; CookieBytes adds "edgepass_session=",
	// the part a browser's 4096-byte per-cookie limit counts.
	TokenBytes  int
	CookieBytes int
	Fits        bool // CookieBytes <= token.MaxTokenSize and token.Sign accepted it
	// MaxGroupsThatFit is how many of these groups fit, when all did not.
	MaxGroupsThatFit int
}

// MeasureCookieSize signs the daemon's claim set (keys.Ring.Sign: iss, aud,
// sub, sid, iat, exp, email, name, preferred_username, groups) for a user in
// the first n realistic groups, with a daemon-shaped key id and session id.
func MeasureCookieSize(n int, cookieName string) (CookieSize, error) {
	if n < 0 || n > len(realisticGroups) {
		return CookieSize{}, fmt.Errorf("cookie size: %d groups asked, %d available", n, len(realisticGroups))
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return CookieSize{}, err
	}
	sum := sha256.Sum256(pub)
	kid := base64.RawURLEncoding.EncodeToString(sum[:])[:16] // as daemon/keys newKey
	sid := make([]byte, 32)                                  // session.Session.ID: 32 random bytes
	_, _ = rand.Read(sid)
	now := time.Now()
	claims := func(groups []string) *token.Claims {
		return &token.Claims{
			Issuer:            "https://auth.example.com",
			Audience:          token.Audience{policy.DefaultAudience},
			Subject:           "f3b6c9e2-8d1a-4c7e-9b2f-5a0d6e4c3b1a", // a Keycloak-style subject
			SessionID:         base64.RawURLEncoding.EncodeToString(sid),
			IssuedAt:          now.Unix(),
			Expiry:            now.Add(12 * time.Hour).Unix(),
			Email:             "alexandra.johnson-whitfield@example.com",
			Name:              "Alexandra Johnson-Whitfield",
			PreferredUsername: "alexandra.johnson-whitfield",
			Groups:            groups,
		}
	}
	res := CookieSize{Groups: n}
	raw, err := token.Sign(claims(realisticGroups[:n]), kid, priv)
	switch {
	case err == nil:
		res.TokenBytes = len(raw)
		res.CookieBytes = len(cookieName) + 1 + len(raw)
		res.Fits = res.CookieBytes <= token.MaxTokenSize
		res.MaxGroupsThatFit = n
		if res.Fits {
			return res, nil
		}
	case errors.Is(err, token.ErrTooLarge):
	default:
		return res, fmt.Errorf("cookie size: token.Sign: %w", err)
	}
	// Find how many groups do fit.
	for k := n - 1; k >= 0; k-- {
		raw, err := token.Sign(claims(realisticGroups[:k]), kid, priv)
		if err == nil && len(cookieName)+1+len(raw) <= token.MaxTokenSize {
			res.MaxGroupsThatFit = k
			break
		}
	}
	return res, nil
}
