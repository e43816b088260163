package edgepass

import (
	"fmt"
	"sort"
	"strings"

	"github.com/edgepass/edgepass/plugin/suggest"
)

// settingNames are the middleware's settings as users write them; unknown
// ones are refused with the closest of these (TestSettingNamesMatchConfig
// keeps the lists equal to the Config fields).
var settingNames = []string{
	"loginURL", "issuer", "audience", "jwks", "trustAnchors", "cookieName", "clockSkew",
	"allowedGroups", "allowedUsers", "allowedEmailDomains", "publicPaths",
	"userHeader", "emailHeader", "groupsHeader", "nameHeader", "subjectHeader", "groupsSeparator",
	"stripHeaders", "removeCookie", "requireSync", "logLevel", "cacheSize", "maxStaleness", "staleAction", "nats",
	"assertionHeader", "assertionAudience", "serviceTokens", "bearer",
}

// bearerSettingNames are the settings under bearer.
var bearerSettingNames = []string{"enabled", "issuer", "audiences", "groupsClaim"}

// serviceTokenSettingNames are the settings under serviceTokens.
var serviceTokenSettingNames = []string{"enabled", "audiences"}

// natsSettingNames are the settings under nats.
var natsSettingNames = []string{
	"urls", "bucket", "token", "tokenFile", "user", "password", "passwordFile", "nkeySeed", "nkeySeedFile",
	"credsFile", "certFile", "keyFile", "edgeName", "caFile", "tlsServerName", "insecureSkipVerify", "replicaID",
}

// unknownSettings refuses settings Traefik's decoder collected into
// UnknownSettings, naming each and the closest valid one.
func unknownSettings(cfg *Config) error {
	var msgs []string
	msgs = append(msgs, describeUnknown("", cfg.UnknownSettings, settingNames)...)
	msgs = append(msgs, describeUnknown("nats.", cfg.NATS.UnknownSettings, natsSettingNames)...)
	msgs = append(msgs, describeUnknown("serviceTokens.", cfg.ServiceTokens.UnknownSettings, serviceTokenSettingNames)...)
	msgs = append(msgs, describeUnknown("bearer.", cfg.Bearer.UnknownSettings, bearerSettingNames)...)
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("edgepass: %s; the route is not served until the configuration is fixed", strings.Join(msgs, "; "))
}

// typoEdits is how many edits a misspelled setting may be from the one it
// names: up to 3, and at most half its length (a short name is near anything).
func typoEdits(name string) int {
	if len(name)/2 < 3 {
		return len(name) / 2
	}
	return 3
}

func describeUnknown(prefix string, unknown map[string]interface{}, valid []string) []string {
	var keys []string
	for k := range unknown {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		msg := fmt.Sprintf("unknown setting %q", prefix+k)
		if near := suggest.Closest(k, valid, typoEdits(k)); near != "" {
			msg += fmt.Sprintf("; did you mean %q?", prefix+near)
		}
		out = append(out, msg)
	}
	return out
}
