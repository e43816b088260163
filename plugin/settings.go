package edgepass

import (
	"fmt"
	"sort"
	"strings"
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

func describeUnknown(prefix string, unknown map[string]interface{}, valid []string) []string {
	var keys []string
	for k := range unknown {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		msg := fmt.Sprintf("unknown setting %q", prefix+k)
		if near := closest(k, valid); near != "" {
			msg += fmt.Sprintf("; did you mean %q?", prefix+near)
		}
		out = append(out, msg)
	}
	return out
}

// closest is the valid name nearest to name (case-insensitive edit
// distance), if near enough to be a likely typo.
func closest(name string, valid []string) string {
	best, bestDist := "", 0
	n := strings.ToLower(name)
	for _, v := range valid {
		d := editDistance(n, strings.ToLower(v))
		if best == "" || d < bestDist {
			best, bestDist = v, d
		}
	}
	if bestDist > 3 || bestDist > len(name)/2 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := 0; j <= len(b); j++ {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := prev[j] + 1
			if cur[j-1]+1 < v {
				v = cur[j-1] + 1
			}
			if prev[j-1]+cost < v {
				v = prev[j-1] + cost
			}
			cur[j] = v
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
