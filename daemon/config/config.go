// Package config is the daemon's configuration: one struct tree, defaults in
// New, loaded the way Traefik loads its static configuration (paerser: file,
// environment, flags), then completed and validated before anything starts.
package config

import (
	"time"

	ptypes "github.com/traefik/paerser/types"

	"github.com/edgepass/edgepass/plugin/policy"
)

// EnvPrefix is the prefix of the environment variables the daemon reads
// (EDGEPASS_OIDC_ISSUER sets oidc.issuer).
const EnvPrefix = "EDGEPASS_"

// Configuration is the daemon's whole configuration. Field names are the
// setting names (matched case-insensitively): publicURL, oidc.issuer, …
type Configuration struct {
	// ConfigFile is read before everything else; the file tag keeps a file from naming another file.
	ConfigFile string `description:"Configuration file (YAML or TOML); flags and EDGEPASS_* variables override it." file:"-" json:"-"`

	PublicURL string `description:"External base URL of the daemon (scheme://host[:port]); also the token issuer (iss)." json:"publicURL"`
	Listen    string `description:"Address of the browser listener (login, callback, logout, /verify, JWKS)." json:"listen"`
	DataDir   string `description:"Directory of the daemon's local state: generated NATS credentials (credentials/), the encryption key and, by default, the embedded NATS store (nats/). Created with mode 0700." json:"dataDir"`
	// TrustedProxies decide who the client is for the login rate limit.
	TrustedProxies []string `description:"Proxies in front of the daemon (IP addresses or CIDRs, e.g. Traefik's): from these peers the last X-Forwarded-For hop that is not itself a trusted proxy is the client, for session.loginRateLimit; from any other peer the header is ignored." json:"trustedProxies"`

	OIDC    OIDC    `description:"OpenID Connect provider (the IdP)." json:"oidc"`
	Session Session `description:"Sessions and the session cookie." json:"session"`
	Keys    Keys    `description:"Token signing keys." json:"keys"`
	NATS    NATS    `description:"NATS: embedded server or external cluster, and bucket names." json:"nats"`
	Admin   Admin   `description:"Admin API (its own listener, bearer token)." json:"admin"`
	Events  Events  `description:"Audit trail: who changed sessions, users, groups and keys (a JetStream stream)." json:"events"`
	Log     Log     `description:"Logging." json:"log"`
}

// OIDC configures the relying party against the identity provider.
type OIDC struct {
	Issuer           string   `description:"Issuer URL of the OIDC provider (discovery at <issuer>/.well-known/openid-configuration)." json:"issuer"`
	ClientID         string   `description:"OAuth2 client id registered at the provider." json:"clientID"`
	ClientSecret     string   `description:"OAuth2 client secret (prefer clientSecretFile)." json:"-"`
	ClientSecretFile string   `description:"File holding the client secret (trailing newline ignored)." json:"clientSecretFile"`
	Scopes           []string `description:"Scopes requested at login." json:"scopes"`
	GroupsClaim      []string `description:"Where the user's groups are: one or more claim paths into the ID token and userinfo claims, whose groups are merged (in order, duplicates dropped) before groupsInclude applies. A claim name (groups), a nested path (realm_access.roles), a key with punctuation in brackets and quotes (resource_access[\"my-client\"].roles), and .keys() at the end to take an object's keys ([\"urn:zitadel:iam:org:project:roles\"].keys()). In flags and variables, paths are separated by commas." json:"groupsClaim"`
	UserClaims       []string `description:"Claims naming the user (the token's preferred_username, the edges' user header), in order: the first one holding a string wins; email counts only when not marked unverified; the sub when none does. Claim paths as in groupsClaim." json:"userClaims"`
	UsernameClaim    string   `description:"Older form of userClaims: usernameClaim: upn means userClaims: [upn, email, sub]. Set one of the two." json:"usernameClaim"`
	RequiredGroups   []string `description:"If set, only users in at least one of these groups may sign in." json:"requiredGroups"`
	GroupsInclude    []string `description:"If set, only these of the IdP's groups reach the edges (exact names, or prefixes ending in *, e.g. team-*); applied at login and refresh before anything else, so it must keep every requiredGroups entry." json:"groupsInclude"`
}

// Session configures session lifetime, the cookie and where logins may return to.
type Session struct {
	Lifetime        ptypes.Duration `description:"Session (and token) lifetime; also the max age of the edge and session buckets." json:"lifetime"`
	CookieName      string          `description:"Session cookie name." json:"cookieName"`
	CookieDomain    string          `description:"Session cookie Domain attribute (\"\" = host-only)." json:"cookieDomain"`
	CookieSecure    bool            `description:"Set the Secure attribute on the session cookie." json:"cookieSecure"`
	AllowedDomains  []string        `description:"Hosts a login may redirect back to (exact, or \"*.example.com\" for subdomains). Default: the publicURL host." json:"allowedDomains"`
	DefaultRedirect string          `description:"Where a login without rd= lands. Default: publicURL + \"/\"." json:"defaultRedirect"`
	RefreshInterval ptypes.Duration `description:"How often sessions are re-checked at the IdP with their refresh token (0 = never)." json:"refreshInterval"`
	LoginRateLimit  int             `description:"Requests per minute one client (address; IPv6 per /64; see trustedProxies) may send to each of /login and /callback; more are answered 429 with Retry-After (0 = no limit)." json:"loginRateLimit"`
	LoginRateBurst  int             `description:"Requests one client may send at once before session.loginRateLimit applies." json:"loginRateBurst"`
}

// Keys configures the Ed25519 signing key ring.
type Keys struct {
	RotationInterval  ptypes.Duration `description:"Rotate the signing key this often (0 = only on command)." json:"rotationInterval"`
	ClockSkew         ptypes.Duration `description:"Extra time a retired public key stays published after the last token it signed expired (cover the edges' clockSkew)." json:"clockSkew"`
	EncryptionKeyFile string          `description:"File holding the 32-byte key (base64) that encrypts signing keys and refresh tokens at rest in NATS. Default <dataDir>/encryption.key, generated on first start; every daemon replica needs the same file." json:"encryptionKeyFile"`
}

// NATS configures the embedded server or the external connection, and the buckets.
type NATS struct {
	Embedded        Embedded `description:"Embedded NATS server with JetStream (one process is a complete install)." json:"embedded"`
	URLs            []string `description:"External NATS servers (nats://, tls://), used when embedded.enabled is false." json:"urls"`
	Token           string   `description:"External NATS: token authentication (prefer tokenFile)." json:"-"`
	TokenFile       string   `description:"External NATS: file holding the token." json:"tokenFile"`
	User            string   `description:"External NATS: user name." json:"user"`
	Password        string   `description:"External NATS: password (prefer passwordFile)." json:"-"`
	PasswordFile    string   `description:"External NATS: file holding the password." json:"passwordFile"`
	CredentialsFile string   `description:"External NATS: .creds file (JWT + NKey seed)." json:"credentialsFile"`
	CAFile          string   `description:"External NATS: CA bundle to verify the server's TLS certificate." json:"caFile"`
	Replicas        int      `description:"JetStream replicas of the buckets (1 for a single server, 3 in a cluster)." json:"replicas"`
	EdgeBucket      string   `description:"KV bucket read by the edges (revocations, groups, public keys)." json:"edgeBucket"`
	SessionBucket   string   `description:"KV bucket holding sessions (never readable by edges)." json:"sessionBucket"`
	KeyBucket       string   `description:"KV bucket holding the private signing keys (never readable by edges)." json:"keyBucket"`
}

// Embedded configures the in-process nats-server.
type Embedded struct {
	Enabled    bool   `description:"Run NATS with JetStream inside the daemon." json:"enabled"`
	Listen     string `description:"Client address of the embedded server (edges connect here); \"\" = no client port." json:"listen"`
	DataDir    string `description:"JetStream storage directory (default <dataDir>/nats)." json:"dataDir"`
	SyncAlways bool   `description:"fsync every JetStream write (survives power loss, slower); a crash or kill -9 loses nothing either way." json:"syncAlways"`
	// Edges are the NATS users the embedded server creates for Traefik
	// replicas; every client authenticates, there is no anonymous access.
	Edges []string `description:"Edge credentials to create: one NATS user per Traefik replica, or per group of replicas sharing a middleware configuration. Each gets <dataDir>/credentials/<name>.password (generated on first start, mode 0600; write your own there to choose it) and may only read the edge bucket (plugin nats.user: <name>, nats.passwordFile: that file)." json:"edges"`
}

// Admin configures the admin API. URL is not used by serve: the CLI reads
// --admin.url / EDGEPASS_ADMIN_URL itself (default DefaultAdminURL), and the
// field is here so that serve still loads with that variable set or
// admin.url in a shared configuration file (paerser refuses unknown keys).
type Admin struct {
	Listen    string `description:"Address of the admin API listener." json:"listen"`
	Token     string `description:"Bearer token of the admin API (prefer tokenFile): read-write, named \"admin\" in the audit trail." json:"-"`
	TokenFile string `description:"File holding the admin bearer token." json:"tokenFile"`
	URL       string `description:"Admin API base URL used by the CLI commands (ignored by serve)." json:"url"`
	// Tokens are named API tokens; admin.token is the read-write token "admin".
	Tokens  []AdminToken `description:"Named admin API tokens, each read from a file and read-write or read-only; every change made with one names it in the audit trail. In YAML: tokens: [{name: ci, file: /etc/edgepass/ci.token, readOnly: true}]; as flags --admin.tokens[0].name=ci." json:"tokens"`
	Console Console      `description:"Web console for administrators, served on the admin listener (and optionally under publicURL): people sign in at the IdP and need one of admin.console.groups." json:"console"`
}

// AdminToken is one named admin API token (see adminconsole.go).
type AdminToken struct {
	Name     string `description:"The token's name, recorded as the actor of every change made with it (letters, digits, ., - and _)." json:"name"`
	File     string `description:"File holding the token (at least 16 characters)." json:"file"`
	ReadOnly bool   `description:"Allow only reads (GET): a read-only token is refused every change." json:"readOnly"`
	// secret is File's content, read by Load.
	secret string
}

// Console configures the administrators' web console.
type Console struct {
	Enabled bool     `description:"Serve the web console at <admin.console.url>/console/ on the admin listener." json:"enabled"`
	URL     string   `description:"The admin listener's URL as browsers reach it (scheme://host[:port], no path); the IdP must accept <url>/console/callback as a redirect URI. Default: http://<admin.listen>." json:"url"`
	Groups  []string `description:"IdP groups whose members may use the console (required with enabled); everyone else who signs in gets 403." json:"groups"`
	Public  bool     `description:"Also serve the console under <publicURL>/console/ on the browser listener (register <publicURL>/console/callback at the IdP too)." json:"public"`
	// SessionLifetime bounds a console sign-in.
	SessionLifetime ptypes.Duration `description:"How long a console sign-in lasts before the administrator signs in again at the IdP." json:"sessionLifetime"`
}

// Events configures the audit trail.
type Events struct {
	Stream   string          `description:"JetStream stream holding the audit trail (subjects edgepass.events.<stream>.>)." json:"stream"`
	MaxAge   ptypes.Duration `description:"How long events are kept; older ones are dropped." json:"maxAge"`
	MaxBytes int64           `description:"Largest size of the stream in bytes; the oldest events are dropped first." json:"maxBytes"`
	Stdout   bool            `description:"Also write every event this replica records to stdout as one JSON line (for log shippers; the log itself goes to stderr)." json:"stdout"`
}

// Log configures logging.
type Log struct {
	Level  string `description:"Log level: debug, info, warn or error." json:"level"`
	Format string `description:"Log format: text (key=value lines) or json (one JSON object per line, for log shippers)." json:"format"`
}

// Defaults, in one place.
const (
	DefaultPublicURL     = "http://127.0.0.1:8000"
	DefaultListen        = "127.0.0.1:8000"
	DefaultAdminListen   = "127.0.0.1:8001"
	DefaultAdminURL      = "http://127.0.0.1:8001"
	DefaultNATSListen    = "127.0.0.1:4222"
	DefaultDataDir       = "./data"
	DefaultEdgeName      = "edge"
	DefaultEdgeBucket    = "edgepass_edge"
	DefaultSessionBucket = "edgepass_sessions"
	DefaultKeyBucket     = "edgepass_keys"
	DefaultCookieName    = policy.DefaultCookieName
	DefaultLifetime      = 12 * time.Hour
	DefaultRefresh       = 5 * time.Minute
	DefaultClockSkew     = time.Minute
	// DefaultLoginRateLimit and DefaultLoginRateBurst leave room for a
	// person retrying and for an office behind one NAT address.
	DefaultLoginRateLimit = 60
	DefaultLoginRateBurst = 20
	// Audit trail and console defaults.
	DefaultEventStream     = "edgepass_events"
	DefaultEventMaxAge     = 90 * 24 * time.Hour
	DefaultEventMaxBytes   = 256 << 20
	DefaultConsoleLifetime = 8 * time.Hour
)

// DefaultGroupsClaim is oidc.groupsClaim's default.
const DefaultGroupsClaim = "groups"

// DefaultUserClaims is oidc.userClaims' default: the order edges have
// always named a user in.
var DefaultUserClaims = []string{"preferred_username", "email", "sub"}

// DefaultTrustedProxies is loopback: Traefik in front on the same host.
var DefaultTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// New returns the configuration with every default set.
func New() *Configuration {
	return &Configuration{
		PublicURL:      DefaultPublicURL,
		Listen:         DefaultListen,
		DataDir:        DefaultDataDir,
		TrustedProxies: append([]string(nil), DefaultTrustedProxies...),
		OIDC: OIDC{
			Scopes:      []string{"openid", "profile", "email", "groups", "offline_access"},
			GroupsClaim: []string{DefaultGroupsClaim},
			UserClaims:  append([]string(nil), DefaultUserClaims...),
		},
		Session: Session{
			Lifetime:        ptypes.Duration(DefaultLifetime),
			CookieName:      DefaultCookieName,
			CookieSecure:    true,
			RefreshInterval: ptypes.Duration(DefaultRefresh),
			LoginRateLimit:  DefaultLoginRateLimit,
			LoginRateBurst:  DefaultLoginRateBurst,
		},
		Keys: Keys{
			ClockSkew: ptypes.Duration(DefaultClockSkew),
		},
		NATS: NATS{
			Embedded: Embedded{
				Enabled: true,
				Listen:  DefaultNATSListen,
				Edges:   []string{DefaultEdgeName},
			},
			Replicas:      1,
			EdgeBucket:    DefaultEdgeBucket,
			SessionBucket: DefaultSessionBucket,
			KeyBucket:     DefaultKeyBucket,
		},
		Admin: Admin{
			Listen:  DefaultAdminListen,
			URL:     DefaultAdminURL,
			Console: Console{SessionLifetime: ptypes.Duration(DefaultConsoleLifetime)},
		},
		Events: Events{
			Stream:   DefaultEventStream,
			MaxAge:   ptypes.Duration(DefaultEventMaxAge),
			MaxBytes: DefaultEventMaxBytes,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}
