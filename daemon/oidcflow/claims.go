package oidcflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/edgepass/edgepass/daemon/claimpath"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
	"golang.org/x/oauth2"
)

// maxClaimLen bounds a string claim; longer values are dropped. Group lists
// are filtered (oidc.groupsInclude) and then cut to edgepub's limits, with
// a warning and a metric, so publishing them cannot fail.
const maxClaimLen = 512

// maxParsedGroups bounds how many entries of a groups claim are read at all.
const maxParsedGroups = 100_000

// identity is the user as the IdP describes them.
type identity struct {
	Subject  string
	Username string
	Email    string
	Name     string
	IdPSID   string
	Groups   []string
	// hasGroups is false when neither the ID token nor userinfo carried any
	// of the oidc.groupsClaim paths.
	hasGroups bool
	// emailUnverified: a claim set said email_verified false; the address is
	// not passed on, whatever another claim set says.
	emailUnverified bool
	// users[i] is the first value found for oidc.userClaims[i];
	// groupsAt[i] the groups at oidc.groupsClaim[i], found[i] when present.
	users    []string
	groupsAt [][]string
	found    []bool
}

// claimSet is decoded JSON claims.
type claimSet map[string]any

// claimMapping is oidc.groupsClaim and oidc.userClaims, parsed.
type claimMapping struct {
	groups []claimpath.Path
	user   []claimpath.Path
	// warned remembers the paths already logged as having a shape that
	// yields no groups (an object without .keys()).
	warned sync.Map
}

// DefaultUserClaims is oidc.userClaims' default: the claims naming the
// user, first present wins.
var DefaultUserClaims = []string{"preferred_username", "email", "sub"}

// newClaimMapping parses the groups and user claim paths; errors name the
// setting, the path and the expected syntax.
func newClaimMapping(groups, user []string) (*claimMapping, error) {
	m := &claimMapping{}
	var errs []error
	for _, raw := range groups {
		p, err := claimpath.Parse(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("oidc.groupsClaim: %w; write %s", err, claimpath.Syntax))
			continue
		}
		m.groups = append(m.groups, p)
	}
	for _, raw := range user {
		p, err := claimpath.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("oidc.userClaims: %w; write %s", err, claimpath.Syntax))
			continue
		case p.Keys():
			errs = append(errs, fmt.Errorf("oidc.userClaims %q: .keys() yields a list, and a user name is one string; name a string claim such as preferred_username", raw))
			continue
		}
		m.user = append(m.user, p)
	}
	if len(groups) == 0 {
		errs = append(errs, errors.New("oidc.groupsClaim: give at least one claim path, e.g. groups"))
	}
	if len(user) == 0 {
		errs = append(errs, fmt.Errorf("oidc.userClaims: give at least one claim, e.g. %s", strings.Join(DefaultUserClaims, ", ")))
	}
	return m, errors.Join(errs...)
}

// emailUnverified reports an explicit email_verified false (a JSON bool, or
// the string some providers send): such an address may belong to someone
// else, and edges authorize on email domains, so it is not passed on.
func (c claimSet) emailUnverified() bool {
	switch v := c["email_verified"].(type) {
	case bool:
		return !v
	case string:
		return strings.EqualFold(v, "false")
	}
	return false
}

// str returns a top-level string claim, or "" when absent, not a string or
// too long.
func (c claimSet) str(name string) string {
	return clean(c[name])
}

// clean is v when it is a string of acceptable length, else "".
func clean(v any) string {
	s, _ := v.(string)
	if len(s) > maxClaimLen {
		return ""
	}
	return s
}

// groupsAt returns the groups at p: an array of strings, one string, or
// with .keys() an object's keys. Non-strings, empty names and duplicates
// are dropped; the limits apply later (shapeGroups), after
// oidc.groupsInclude. A value of another shape counts as absent and is
// logged once per path (the fix is usually a .keys() suffix).
func (h *Handler) groupsAt(c claimSet, p claimpath.Path) ([]string, bool) {
	v, found, err := p.Lookup(c)
	if !found || (v == nil && err == nil) {
		return nil, false
	}
	var raw []any
	switch t := v.(type) {
	case []any:
		raw = t
	case string:
		raw = []any{t}
	default:
		hint, shape := "give a path to a list of strings or a string", jsonType(v)
		switch _, obj := v.(map[string]any); {
		case err != nil:
			hint, shape = "keys() needs a JSON object; remove .keys() to read a list", "not an object"
		case obj:
			hint = fmt.Sprintf("it is a JSON object: to take its keys as the groups, write %s.keys()", p)
		}
		if _, done := h.opts.claims.warned.LoadOrStore(p.String(), true); !done {
			h.log.Warn("oidc.groupsClaim path has no usable groups; it is ignored", "path", p.String(), "type", shape, "fix", hint)
		}
		return nil, false
	}
	out := make([]string, 0, min(len(raw), edgepub.MaxGroups))
	seen := make(map[string]bool, min(len(raw), edgepub.MaxGroups))
	for i, g := range raw {
		if i == maxParsedGroups {
			break
		}
		s, ok := g.(string)
		if !ok || s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, true
}

// jsonType names v's JSON type for log messages.
func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64, json.Number:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// groupFilter is oidc.groupsInclude: exact names and prefixes ("team-*").
type groupFilter struct {
	exact    map[string]bool
	prefixes []string
	all      bool
}

// newGroupFilter checks and compiles oidc.groupsInclude; empty keeps all.
func newGroupFilter(patterns []string) (*groupFilter, error) {
	f := &groupFilter{exact: map[string]bool{}, all: len(patterns) == 0}
	for _, p := range patterns {
		body, prefix := strings.CutSuffix(p, "*")
		switch {
		case p == "" || strings.TrimSpace(p) != p:
			return nil, fmt.Errorf("oidc.groupsInclude %q: give a group name, or a prefix ending in \"*\" (no surrounding spaces)", p)
		case strings.Contains(body, "*"):
			return nil, fmt.Errorf("oidc.groupsInclude %q: \"*\" may only end a prefix (\"team-*\")", p)
		case prefix && body == "":
			f.all = true
		case prefix:
			f.prefixes = append(f.prefixes, body)
		default:
			f.exact[p] = true
		}
	}
	return f, nil
}

// keeps reports whether group g passes the filter.
func (f *groupFilter) keeps(g string) bool {
	if f.all || f.exact[g] {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(g, p) {
			return true
		}
	}
	return false
}

// filter returns the groups that pass, in their order.
func (f *groupFilter) filter(groups []string) []string {
	if f.all {
		return groups
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if f.keeps(g) {
			out = append(out, g)
		}
	}
	return out
}

// shapeGroups turns the IdP's groups into the list edges get: first
// oidc.groupsInclude, then edgepub's limits (names over MaxGroupName
// dropped; the list cut at MaxGroups names or MaxGroupBytes bytes), with a
// warning and edgepass_groups_capped_total for whatever is cut, so nothing
// disappears silently.
func (h *Handler) shapeGroups(subject string, groups []string) []string {
	groups = h.include.filter(groups)
	out := make([]string, 0, min(len(groups), edgepub.MaxGroups))
	total, long := 0, 0
	limit, first := "", ""
	for _, g := range groups {
		switch {
		case len(g) > edgepub.MaxGroupName:
			long++
			continue
		case limit != "":
		case len(out) == edgepub.MaxGroups:
			limit, first = LimitCount, g
		case total+len(g) > edgepub.MaxGroupBytes:
			limit, first = LimitBytes, g
		}
		if limit != "" {
			continue
		}
		total += len(g)
		out = append(out, g)
	}
	if limit != "" {
		h.opts.Metrics.GroupsCapped(limit)
		h.log.Warn("groups over edgepass's limits: edges see only the first ones; keep just the groups edges need with oidc.groupsInclude",
			"sub", subject, "kept", len(out), "dropped", len(groups)-len(out)-long, "limit", limit,
			"maxGroups", edgepub.MaxGroups, "maxGroupBytes", edgepub.MaxGroupBytes, "firstDropped", first)
	}
	if long > 0 {
		h.opts.Metrics.GroupsCapped(LimitName)
		h.log.Warn("groups with names over edgepass's limit dropped: edges never see them",
			"sub", subject, "dropped", long, "maxGroupName", edgepub.MaxGroupName)
	}
	return out
}

// fill takes what c has and id still lacks: for each oidc.userClaims and
// oidc.groupsClaim path the first claim set carrying it wins (the ID token
// before userinfo).
func (h *Handler) fill(id *identity, c claimSet) {
	m := h.opts.claims
	if id.users == nil {
		id.users = make([]string, len(m.user))
		id.groupsAt = make([][]string, len(m.groups))
		id.found = make([]bool, len(m.groups))
	}
	for i, p := range m.user {
		if id.users[i] == "" {
			v, _ := p.Value(c)
			id.users[i] = clean(v)
		}
	}
	if c.emailUnverified() {
		id.emailUnverified, id.Email = true, ""
	}
	if id.Email == "" && !id.emailUnverified {
		id.Email = c.str("email")
	}
	if id.Name == "" {
		id.Name = c.str("name")
	}
	for i, p := range m.groups {
		if !id.found[i] {
			id.groupsAt[i], id.found[i] = h.groupsAt(c, p)
		}
	}
}

// complete reports whether the userinfo endpoint has nothing left to add:
// the first user claim, the email, the name and every groups path are known.
func (id *identity) complete() bool {
	return id.users[0] != "" && (id.Email != "" || id.emailUnverified) && id.Name != "" && !slices.Contains(id.found, false)
}

// resolve derives the user name and the groups from what fill collected:
// the first oidc.userClaims entry with a value (an email only when
// verified), else the sub; the union of every groups path present, in
// path order, without duplicates.
func (h *Handler) resolve(id *identity) {
	id.Username = ""
	for i, p := range h.opts.claims.user {
		v := id.users[i]
		if p.IsName("email") {
			v = id.Email // verified, or ""
		}
		if v != "" {
			id.Username = v
			break
		}
	}
	if id.Username == "" {
		id.Username = id.Subject
	}
	id.Groups, id.hasGroups = nil, false
	var seen map[string]bool
	for i, gs := range id.groupsAt {
		if !id.found[i] {
			continue
		}
		if !id.hasGroups {
			id.hasGroups = true
			id.Groups = make([]string, 0, len(gs))
			seen = make(map[string]bool, len(gs))
		}
		for _, g := range gs {
			if !seen[g] && len(id.Groups) < maxParsedGroups {
				seen[g] = true
				id.Groups = append(id.Groups, g)
			}
		}
	}
}

// errUserinfoSubject means userinfo answered for someone else (OIDC Core
// 5.3.2: the sub must match the ID token's).
var errUserinfoSubject = errors.New("userinfo sub does not match the ID token's sub")

// identify builds the identity from ID token claims and, for what they lack,
// the userinfo endpoint; then applies the claim mapping (oidc.userClaims,
// oidc.groupsClaim) and, to the groups, oidc.groupsInclude and the limits
// (mapClaims).
func (h *Handler) identify(ctx context.Context, p *provider, subject string, idClaims claimSet, tok *oauth2.Token) (*identity, error) {
	var uc claimSet
	if !h.idComplete(idClaims) && p.oidc.UserInfoEndpoint() != "" && tok.AccessToken != "" {
		ui, err := p.oidc.UserInfo(h.idp.clientContext(ctx), oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, fmt.Errorf("fetch userinfo: %w", err)
		}
		if ui.Subject != subject {
			return nil, errUserinfoSubject
		}
		if err := ui.Claims(&uc); err != nil {
			return nil, fmt.Errorf("decode userinfo: %w", err)
		}
	}
	return h.mapClaims(subject, idClaims, uc), nil
}

// idComplete reports whether the ID token's claims alone say everything
// the mapping looks for, so userinfo need not be asked.
func (h *Handler) idComplete(idClaims claimSet) bool {
	id := &identity{}
	h.fill(id, idClaims)
	return id.complete()
}

// shape resolves the mapped user name and groups, then filters and caps
// the groups (oidc.groupsInclude, edgepub's limits): mapping first, then
// the filter.
func (h *Handler) shape(id *identity) {
	h.resolve(id)
	if id.hasGroups {
		id.Groups = h.shapeGroups(id.Subject, id.Groups)
	}
}

// mapClaims is the identity edgepass derives from an ID token's claims and,
// when given (identify fetched it), the userinfo answer's.
func (h *Handler) mapClaims(subject string, idClaims, userinfo claimSet) *identity {
	id := &identity{Subject: subject, IdPSID: idClaims.str("sid")}
	h.fill(id, idClaims)
	if userinfo != nil && !id.complete() {
		h.fill(id, userinfo)
	}
	h.shape(id)
	return id
}

// allowed reports whether the user may have a session (requiredGroups).
func (h *Handler) allowed(groups []string) bool {
	if len(h.opts.RequiredGroups) == 0 {
		return true
	}
	for _, g := range h.opts.RequiredGroups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// prioritize puts required groups first, so they are the last to be dropped
// when the token is too large.
func (h *Handler) prioritize(groups []string) []string {
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if slices.Contains(h.opts.RequiredGroups, g) {
			out = append(out, g)
		}
	}
	for _, g := range groups {
		if !slices.Contains(h.opts.RequiredGroups, g) {
			out = append(out, g)
		}
	}
	return out
}

// errTokenTooLarge means even a token without groups does not fit a cookie.
var errTokenTooLarge = errors.New("session token exceeds the cookie size limit even without groups")

// signFitting signs s with as many of its groups as fit one cookie
// (required groups first). It returns the token and the groups it carries;
// the caller makes sure edges learn the rest (issueToken).
func (h *Handler) signFitting(s *session.Session) (string, []string, error) {
	c := *s
	c.Groups = h.prioritize(s.Groups)
	tok, fits, err := h.signIfFits(&c)
	if err != nil {
		return "", nil, err
	}
	if fits {
		return tok, c.Groups, nil
	}
	all := c.Groups
	// Binary search the longest prefix of groups that fits; fits(0) must hold.
	best := ""
	lo, hi := 0, len(all)-1 // all[:hi+1] is known not to fit
	for lo <= hi {
		mid := (lo + hi) / 2
		c.Groups = all[:mid]
		t, fits, err := h.signIfFits(&c)
		if err != nil {
			return "", nil, err
		}
		if fits {
			best, lo = t, mid+1
		} else {
			hi = mid - 1
		}
	}
	if best == "" {
		return "", nil, errTokenTooLarge
	}
	return best, all[:lo-1], nil
}

// signIfFits signs c and reports whether the token fits a cookie; a signer
// that refuses an oversized token (token.ErrTooLarge) means "does not fit".
func (h *Handler) signIfFits(c *session.Session) (string, bool, error) {
	t, err := h.opts.Signer.Sign(c)
	if errors.Is(err, token.ErrTooLarge) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("sign session token: %w", err)
	}
	return t, len(t) <= h.maxToken, nil
}
