package idptoken

import (
	"sort"
	"strings"

	"github.com/edgepass/edgepass/plugin/token"
)

// Limits of a mapped identity, the same for every group list edgepass
// produces (the daemon's edgepub.MaxGroups and MaxGroupName are these).
const (
	MaxGroups    = 1000
	MaxGroupName = 256
	maxClaimLen  = 1024
)

// ClaimPath is one oidc.groupsClaim or oidc.userClaims path, compiled by
// the daemon (package claimpath) so the edge needs no parser: the keys it
// walks, whether it ends in .keys(), and whether the whole text is first
// tried as one claim name (a path written with bare names and dots only).
type ClaimPath struct {
	Raw     string   `json:"raw"`
	Segs    []string `json:"segs"`
	Keys    bool     `json:"keys,omitempty"`
	Literal bool     `json:"literal,omitempty"`
}

// DottedPath is a path written as names separated by dots (a middleware's
// bearer.groupsClaim).
func DottedPath(s string) ClaimPath {
	return ClaimPath{Raw: s, Segs: strings.Split(s, "."), Literal: true}
}

// Value returns what is at p in claims (before keys()): the one walk the
// edge and the daemon's login mapping both use.
func (p ClaimPath) Value(claims map[string]any) (any, bool) {
	if len(p.Segs) == 0 {
		return nil, false
	}
	if p.Literal {
		if v, ok := claims[p.Raw]; ok {
			return v, true
		}
	}
	var cur any = claims
	for _, k := range p.Segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		next, ok := m[k]
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// Mapping turns access-token claims into an identity, as the daemon does
// for a login: the daemon's oidc.groupsClaim, oidc.userClaims and
// oidc.groupsInclude.
type Mapping struct {
	Groups  []ClaimPath
	Users   []ClaimPath
	Include []string // exact names, or prefixes ending in *
}

// Identity is what an access token says about its subject.
type Identity struct {
	Issuer, Subject, User, Email, Name string
	// ID is the token's jti ("" when none): revoke.session.<jti> refuses it.
	ID                          string
	Groups                      []string
	IssuedAt, Expiry, NotBefore int64
	Audiences                   []string
}

// Claims is the identity as session-token claims, which the edge's policy
// and the daemon's minter decide on.
func (id Identity) Claims() *token.Claims {
	return &token.Claims{
		Issuer: id.Issuer, Audience: token.Audience(id.Audiences), Subject: id.Subject, SessionID: id.ID,
		IssuedAt: id.IssuedAt, NotBefore: id.NotBefore, Expiry: id.Expiry,
		Email: id.Email, Name: id.Name, PreferredUsername: id.User, Groups: id.Groups,
	}
}

// Identity maps verified claims.
func (m *Mapping) Identity(c map[string]any) Identity {
	id := Identity{Audiences: Audiences(c)}
	id.Issuer, _ = c["iss"].(string)
	id.Subject, _ = c["sub"].(string)
	id.ID = clean(c["jti"])
	id.IssuedAt, _ = number(c["iat"])
	id.Expiry, _ = number(c["exp"])
	id.NotBefore, _ = number(c["nbf"])
	unverified := false
	switch v := c["email_verified"].(type) {
	case bool:
		unverified = !v
	case string:
		unverified = strings.EqualFold(v, "false")
	}
	if !unverified {
		id.Email = clean(c["email"])
	}
	id.Name = clean(c["name"])
	for _, p := range m.Users {
		if unverified && len(p.Segs) == 1 && p.Segs[0] == "email" {
			continue
		}
		v, _ := p.Value(c)
		if s := clean(v); s != "" {
			id.User = s
			break
		}
	}
	seen := map[string]bool{}
	for _, p := range m.Groups {
		for _, g := range groupsAt(c, p) {
			if g == "" || len(g) > MaxGroupName || seen[g] || !m.included(g) || len(id.Groups) >= MaxGroups {
				continue
			}
			seen[g] = true
			id.Groups = append(id.Groups, g)
		}
	}
	return id
}

// groupsAt returns the groups at p: a list of strings, one string, or
// with .keys() an object's keys (sorted); anything else is none.
func groupsAt(c map[string]any, p ClaimPath) []string {
	v, ok := p.Value(c)
	if !ok {
		return nil
	}
	if p.Keys {
		obj, isObj := v.(map[string]any)
		if !isObj {
			return nil
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	}
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func (m *Mapping) included(g string) bool {
	if len(m.Include) == 0 {
		return true
	}
	for _, p := range m.Include {
		if strings.HasSuffix(p, "*") {
			if strings.HasPrefix(g, strings.TrimSuffix(p, "*")) {
				return true
			}
		} else if g == p {
			return true
		}
	}
	return false
}

func clean(v any) string {
	s, _ := v.(string)
	if len(s) > maxClaimLen {
		return ""
	}
	return s
}
