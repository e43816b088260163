package oidcflow

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// Each recipe in docs/idp/ gives edgepass settings for one provider. These
// tests feed that provider's ID token and userinfo claims, in the shape its
// documentation shows, to the claim mapping with the recipe's settings, and
// check the user name, email and groups edgepass derives (the session's
// preferred_username, which edges put in X-Auth-User, and its groups).
// Timestamps, nonces and hashes are placeholders; the claim names, nesting
// and value types are the providers'.
func TestIdPClaimShapes(t *testing.T) {
	cases := []struct {
		name   string
		recipe string // docs/idp/<recipe>.md
		opts   func(o *Options)
		sub    string
		// id is the ID token's payload; ui the userinfo answer ("" when the
		// ID token is enough, or the provider has none worth asking).
		id, ui     string
		wantUser   string
		wantEmail  string
		wantGroups []string // nil: no groups claim, so edges see none
	}{
		{
			// authentik: the default "profile" scope mapping adds name,
			// given_name, preferred_username, nickname and groups (group
			// names); "Include claims in id_token" is on by default; sub is
			// the hashed user id by default.
			// https://docs.goauthentik.io/add-secure-apps/providers/oauth2/
			// https://docs.goauthentik.io/add-secure-apps/providers/property-mappings/
			name:   "authentik",
			recipe: "authentik",
			sub:    "8b3ee8f2a5d1f3c7a1e6f5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4",
			id: `{
				"iss": "https://authentik.example.com/application/o/edgepass/",
				"sub": "8b3ee8f2a5d1f3c7a1e6f5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4",
				"aud": "Q8Hk3vXw0mPZ7aLx2Yt9cR4sN1uE6bJ5",
				"exp": 1767229200, "iat": 1767225600, "auth_time": 1767225590,
				"acr": "goauthentik.io/providers/oauth2/default",
				"amr": ["pwd"],
				"nonce": "nonce-placeholder",
				"sid": "a7c2e4b1d9f8e3a6c5b4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2",
				"at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
				"email": "alice@example.com",
				"email_verified": true,
				"name": "Alice Example",
				"given_name": "Alice Example",
				"preferred_username": "alice",
				"nickname": "alice",
				"groups": ["authentik Admins", "staff"]
			}`,
			wantUser:   "alice",
			wantEmail:  "alice@example.com",
			wantGroups: []string{"authentik Admins", "staff"},
		},
		{
			// Keycloak: realm roles under realm_access.roles and client roles
			// under resource_access.<client id>.roles (the "roles" client
			// scope's mappers, with "Add to ID token" turned on); Keycloak
			// adds default-roles-<realm>, offline_access and
			// uma_authorization to everyone, which groupsInclude keeps out.
			// https://www.keycloak.org/docs/latest/server_admin/#_protocol-mappers
			// https://www.keycloak.org/docs/latest/server_admin/#_role_scope_mappings
			name:   "Keycloak, realm and client roles",
			recipe: "keycloak",
			opts: func(o *Options) {
				o.GroupsClaims = []string{"realm_access.roles", `resource_access["edgepass"].roles`}
				o.GroupsInclude = []string{"staff", "admins", "wiki-*"}
			},
			sub: "4c0d1f6e-8a3b-4d2e-9f1a-7b6c5d4e3f21",
			id: `{
				"exp": 1767229200, "iat": 1767225600, "auth_time": 1767225590,
				"jti": "0f3b9c1e-2d4a-4b6c-8e0f-1a2b3c4d5e6f",
				"iss": "https://keycloak.example.com/realms/main",
				"aud": "edgepass",
				"sub": "4c0d1f6e-8a3b-4d2e-9f1a-7b6c5d4e3f21",
				"typ": "ID",
				"azp": "edgepass",
				"nonce": "nonce-placeholder",
				"sid": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
				"at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
				"acr": "1",
				"realm_access": {"roles": ["default-roles-main", "offline_access", "uma_authorization", "staff"]},
				"resource_access": {
					"edgepass": {"roles": ["wiki-editor"]},
					"account": {"roles": ["manage-account", "manage-account-links", "view-profile"]}
				},
				"email_verified": true,
				"name": "Alice Example",
				"preferred_username": "alice",
				"given_name": "Alice",
				"family_name": "Example",
				"email": "alice@example.com"
			}`,
			wantUser:   "alice",
			wantEmail:  "alice@example.com",
			wantGroups: []string{"staff", "wiki-editor"},
		},
		{
			// Keycloak with a "Group Membership" mapper (token claim name
			// groups, "Full group path" off) added to userinfo only: the ID
			// token lacks groups, so edgepass asks userinfo.
			// https://www.keycloak.org/docs/latest/server_admin/#_protocol-mappers
			name:   "Keycloak, groups from userinfo",
			recipe: "keycloak",
			sub:    "4c0d1f6e-8a3b-4d2e-9f1a-7b6c5d4e3f21",
			id: `{
				"iss": "https://keycloak.example.com/realms/main", "aud": "edgepass", "typ": "ID", "azp": "edgepass",
				"sub": "4c0d1f6e-8a3b-4d2e-9f1a-7b6c5d4e3f21", "sid": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
				"exp": 1767229200, "iat": 1767225600, "acr": "1",
				"email_verified": true, "name": "Alice Example", "preferred_username": "alice",
				"given_name": "Alice", "family_name": "Example", "email": "alice@example.com"
			}`,
			ui: `{
				"sub": "4c0d1f6e-8a3b-4d2e-9f1a-7b6c5d4e3f21",
				"email_verified": true, "name": "Alice Example", "preferred_username": "alice",
				"given_name": "Alice", "family_name": "Example", "email": "alice@example.com",
				"groups": ["staff", "engineering"]
			}`,
			wantUser:   "alice",
			wantEmail:  "alice@example.com",
			wantGroups: []string{"staff", "engineering"},
		},
		{
			// Dex v2.45+: a static password with preferredUsername and
			// groups; sub is Dex's encoding of the user id and connector.
			// Claims per scope: email (email, email_verified), groups,
			// profile (name, preferred_username).
			// https://dexidp.io/docs/configuration/custom-scopes-claims-clients/
			// https://github.com/dexidp/dex/blob/v2.45.1/server/oauth2.go (idTokenClaims)
			name:   "Dex",
			recipe: "dex",
			sub:    "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs",
			id: `{
				"iss": "http://dex.localhost:5556/dex",
				"sub": "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs",
				"aud": "edgepass",
				"exp": 1767229200, "iat": 1767225600,
				"nonce": "nonce-placeholder",
				"at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
				"c_hash": "LDktKdoQak3Pk0cnXxCltA",
				"email": "alice@example.com",
				"email_verified": true,
				"groups": ["staff", "admins"],
				"name": "Alice Example",
				"preferred_username": "alice"
			}`,
			wantUser:   "alice",
			wantEmail:  "alice@example.com",
			wantGroups: []string{"staff", "admins"},
		},
		{
			// Dex with an upstream connector that has no preferred name
			// (or a static password without preferredUsername): the user
			// is named by the email.
			// https://dexidp.io/docs/configuration/custom-scopes-claims-clients/
			name:   "Dex without preferred_username",
			recipe: "dex",
			sub:    "CgcyMzQyNzQ0EgZnaXRodWI",
			id: `{
				"iss": "https://dex.example.com", "sub": "CgcyMzQyNzQ0EgZnaXRodWI", "aud": "edgepass",
				"exp": 1767229200, "iat": 1767225600, "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
				"email": "alice@example.com", "email_verified": true,
				"groups": ["acme:staff", "acme:wiki"],
				"name": "Alice Example",
				"federated_claims": {"connector_id": "github", "user_id": "2342744"}
			}`,
			wantUser:   "alice@example.com",
			wantEmail:  "alice@example.com",
			wantGroups: []string{"acme:staff", "acme:wiki"},
		},
		{
			// ZITADEL: by default the ID token carries no profile and no
			// roles ("User Info inside ID Token" off); userinfo has them once
			// the project asserts roles on authentication. The roles claim
			// is an object: role key -> {organization id: organization
			// domain}; edgepass takes its keys.
			// https://zitadel.com/docs/apis/openidoauth/claims
			// https://zitadel.com/docs/guides/integrate/retrieve-user-roles
			name:   "ZITADEL",
			recipe: "zitadel",
			opts: func(o *Options) {
				o.GroupsClaims = []string{`["urn:zitadel:iam:org:project:roles"].keys()`}
			},
			sub: "259241944654282753",
			id: `{
				"iss": "https://acme-abc123.zitadel.cloud",
				"sub": "259241944654282753",
				"aud": ["259242039378444289@edgepass", "259241972046217217"],
				"exp": 1767229200, "iat": 1767225600, "auth_time": 1767225590,
				"amr": ["pwd"],
				"azp": "259242039378444289@edgepass",
				"client_id": "259242039378444289@edgepass",
				"at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
				"sid": "V1_259242114284716033",
				"nonce": "nonce-placeholder"
			}`,
			ui: `{
				"sub": "259241944654282753",
				"name": "Alice Example",
				"given_name": "Alice",
				"family_name": "Example",
				"locale": "en",
				"updated_at": 1767225000,
				"preferred_username": "alice@acme.example.com",
				"email": "alice@acme.example.com",
				"email_verified": true,
				"urn:zitadel:iam:org:project:roles": {
					"wiki-editor": {"259241944654217217": "acme.example.com"},
					"staff": {"259241944654217217": "acme.example.com"}
				},
				"urn:zitadel:iam:org:project:259241972046217217:roles": {
					"wiki-editor": {"259241944654217217": "acme.example.com"},
					"staff": {"259241944654217217": "acme.example.com"}
				}
			}`,
			wantUser:   "alice@acme.example.com",
			wantEmail:  "alice@acme.example.com",
			wantGroups: []string{"staff", "wiki-editor"},
		},
		{
			// Microsoft Entra ID, v2.0 ID token with app roles (roles) and
			// the optional claims email and groups (object ids).
			// https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference
			// https://learn.microsoft.com/entra/identity-platform/howto-add-app-roles-in-apps
			name:   "Entra ID, app roles",
			recipe: "entra-id",
			opts: func(o *Options) {
				o.GroupsClaims = []string{"roles"}
			},
			sub: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
			id: `{
				"aud": "6cb04018-a3f5-46a7-b995-940c78f5aef3",
				"iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
				"iat": 1767225600, "nbf": 1767225600, "exp": 1767229500,
				"email": "alice@contoso.com",
				"groups": ["6ec2cd4a-4f51-4a8f-9c3b-1e0a2b3c4d5e", "0b5f7c2e-3d4a-4e6f-8a9b-1c2d3e4f5a6b"],
				"name": "Alice Example",
				"nonce": "nonce-placeholder",
				"oid": "00000000-0000-0000-66f3-3332eca7ea81",
				"preferred_username": "alice@contoso.com",
				"rh": "0.ARoAv4j5cvGGr0GRqy180BHbR_ZjZmjX2XJMkYnjvK5-HDsaAAA.",
				"roles": ["Wiki.Editor", "Staff"],
				"sid": "00138e02-6ac5-a72a-4f0f-1e1f2b7d0b7c",
				"sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
				"tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
				"uti": "fqiBqXLPj0eQa82S-IYFAA",
				"ver": "2.0"
			}`,
			wantUser:   "alice@contoso.com",
			wantEmail:  "alice@contoso.com",
			wantGroups: []string{"Wiki.Editor", "Staff"},
		},
		{
			// Entra group overage: a user in more groups than a JWT carries
			// (200) gets _claim_names/_claim_sources pointing at Microsoft
			// Graph instead of groups. edgepass does not call Graph: the
			// groups path is absent (userinfo has no groups either), and
			// app roles still arrive. Hence the recipe's advice: app roles.
			// https://learn.microsoft.com/security/zero-trust/develop/configure-tokens-group-claims-app-roles
			// https://learn.microsoft.com/entra/identity-platform/userinfo
			name:   "Entra ID, group overage",
			recipe: "entra-id",
			opts: func(o *Options) {
				o.GroupsClaims = []string{"groups", "roles"}
			},
			sub: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
			id: `{
				"aud": "6cb04018-a3f5-46a7-b995-940c78f5aef3",
				"iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
				"iat": 1767225600, "nbf": 1767225600, "exp": 1767229500,
				"_claim_names": {"groups": "src1"},
				"_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/users/00000000-0000-0000-66f3-3332eca7ea81/getMemberObjects"}},
				"name": "Alice Example",
				"oid": "00000000-0000-0000-66f3-3332eca7ea81",
				"preferred_username": "alice@contoso.com",
				"roles": ["Staff"],
				"sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
				"tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
				"ver": "2.0"
			}`,
			ui: `{
				"sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
				"name": "Alice Example",
				"family_name": "Example",
				"given_name": "Alice",
				"picture": "https://graph.microsoft.com/v1.0/me/photo/$value",
				"email": "alice@contoso.com"
			}`,
			wantUser:   "alice@contoso.com",
			wantEmail:  "alice@contoso.com",
			wantGroups: []string{"Staff"},
		},
		{
			// Google: no groups claim and no preferred_username, so the
			// user is named by the email (allowedEmailDomains/allowedUsers
			// at the edge). Google's documented ID token sends
			// email_verified as the string "true".
			// https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload
			// https://developers.google.com/identity/openid-connect/openid-connect#obtaininguserprofileinformation
			name:   "Google",
			recipe: "google",
			sub:    "10769150350006150715113082367",
			id: `{
				"iss": "https://accounts.google.com",
				"azp": "1234987819200.apps.googleusercontent.com",
				"aud": "1234987819200.apps.googleusercontent.com",
				"sub": "10769150350006150715113082367",
				"at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
				"hd": "example.com",
				"email": "jsmith@example.com",
				"email_verified": "true",
				"iat": 1353601026,
				"exp": 1353604926,
				"nonce": "0394852-3190485-2490358"
			}`,
			ui: `{
				"sub": "10769150350006150715113082367",
				"name": "Jane Smith",
				"given_name": "Jane",
				"family_name": "Smith",
				"picture": "https://lh3.googleusercontent.com/a/placeholder",
				"email": "jsmith@example.com",
				"email_verified": true,
				"hd": "example.com"
			}`,
			wantUser:   "jsmith@example.com",
			wantEmail:  "jsmith@example.com",
			wantGroups: nil,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, logs := mappingHandler(t, c.opts)
			id := h.mapClaims(c.sub, claimsJSON(t, c.id), claimsJSON(t, c.ui))
			if id.Username != c.wantUser || id.Email != c.wantEmail {
				t.Errorf("docs/idp/%s.md: user %q email %q, want %q %q", c.recipe, id.Username, id.Email, c.wantUser, c.wantEmail)
			}
			if (c.wantGroups == nil) != !id.hasGroups || !slices.Equal(id.Groups, c.wantGroups) {
				t.Errorf("docs/idp/%s.md: groups %q (claim found: %v), want %q", c.recipe, id.Groups, id.hasGroups, c.wantGroups)
			}
			if strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("docs/idp/%s.md: the mapping warned: %s", c.recipe, logs)
			}
		})
	}
}

// The mapping applies where the daemon reads claims: the ID token and
// userinfo at login, and again at refresh, with groupsInclude after it.
func TestClaimMappingAtLoginAndRefresh(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.GroupsClaims = []string{"realm_access.roles", `resource_access["edgepass"].roles`, `["urn:zitadel:iam:org:project:roles"].keys()`}
		o.UserClaims = []string{"upn", "preferred_username"}
		o.GroupsInclude = []string{"staff", "wiki-*"}
	})
	e.idp.set(func(p *testIdP) {
		p.idClaims = map[string]any{"sid": "s1", "preferred_username": "alice", "email": "alice@example.com", "name": "Alice",
			"realm_access": map[string]any{"roles": []any{"default-roles-main", "staff"}}}
		p.userinfo = map[string]any{
			"upn":                               "alice@corp.example.com",
			"resource_access":                   map[string]any{"edgepass": map[string]any{"roles": []any{"wiki-editor"}}},
			"urn:zitadel:iam:org:project:roles": map[string]any{"wiki-admin": map[string]any{"1": "acme"}, "other": map[string]any{"1": "acme"}},
		}
	})
	_, raw := e.loggedIn(t)
	s := e.store.All()[0]
	want := []string{"staff", "wiki-editor", "wiki-admin"}
	if s.Username != "alice@corp.example.com" || !slices.Equal(s.Groups, want) {
		t.Fatalf("login stored user %q groups %q; want alice@corp.example.com %q", s.Username, s.Groups, want)
	}
	if fc, err := decodeFake(raw); err != nil || !slices.Equal(fc.Groups, want) {
		t.Fatalf("token groups %v (%v), want %q", fc, err, want)
	}

	// At refresh the new ID token and userinfo are mapped the same way.
	e.idp.set(func(p *testIdP) {
		p.refreshClaims = map[string]any{"realm_access": map[string]any{"roles": []any{"default-roles-main"}}}
		p.userinfo = map[string]any{
			"resource_access":                   map[string]any{"edgepass": map[string]any{"roles": []any{"wiki-editor"}}},
			"urn:zitadel:iam:org:project:roles": map[string]any{"wiki-reader": map[string]any{"1": "acme"}},
		}
	})
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []string{"wiki-editor", "wiki-reader"}
	if got := e.edge.groups["user-1"]; !slices.Equal(got, want) {
		t.Fatalf("refresh published %q, want %q", got, want)
	}
	if s := e.store.All()[0]; !slices.Equal(s.Groups, want) {
		t.Fatalf("refresh stored %q, want %q", s.Groups, want)
	}
}
