package edgepass

import (
	"strings"

	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// Service tokens are machine credentials the daemon issues (`edgepass
// tokens create`): signed with the session keys, revocable like sessions
// (sid), but with the audience token.ServiceAudience and a scope of route
// audiences (svc_aud). A middleware accepts them only with serviceTokens
// enabled, only as Authorization: Bearer, and only when their scope names
// one of its serviceTokens.audiences; everywhere else their audience is
// wrong (401 wrong_audience).

// compileServiceTokens validates the serviceTokens block into s.
func compileServiceTokens(cfg *Config, s *settings) error {
	st := cfg.ServiceTokens
	auds := policy.SplitList(st.Audiences)
	if !st.Enabled {
		if len(auds) > 0 {
			return fieldErr("serviceTokens.enabled", "set enabled: true to accept service tokens for audiences %v (off by default)", auds)
		}
		return nil
	}
	if len(auds) == 0 {
		return fieldErr("serviceTokens.audiences", "required with serviceTokens.enabled: this route's names, one of which a service token's scope must name (edgepass tokens create --audiences)")
	}
	s.serviceAuds = map[string]bool{}
	for _, a := range auds {
		if a == token.ServiceAudience || a == s.verifier.Audience || strings.ContainsAny(a, " \t\r\n") || len(a) > 256 {
			return fieldErr("serviceTokens.audiences", "%q cannot name a route", a)
		}
		s.serviceAuds[a] = true
	}
	s.anyAudience = s.verifier
	s.anyAudience.Audience = ""
	return nil
}

// isService reports a service token's claims.
func isService(c *token.Claims) bool {
	return c.Audience.Contains(token.ServiceAudience) && strings.HasPrefix(c.Subject, token.ServiceSubjectPrefix)
}

// tokenKind checks a token verified without an audience against this
// middleware: a session (the session audience), or a service token in
// scope; "" and a reason otherwise.
func (m *Middleware) tokenKind(c *token.Claims) string {
	if c.Audience.Contains(m.s.verifier.Audience) {
		return ""
	}
	if !isService(c) {
		return policy.WrongAudience
	}
	for _, a := range c.ServiceAudiences {
		if m.s.serviceAuds[a] {
			return ""
		}
	}
	return policy.WrongAudience
}
