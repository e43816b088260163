package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	ptypes "github.com/traefik/paerser/types"
)

// helpHidden are settings `edgepass serve --help` leaves out: admin.url is
// read by the admin CLI commands, not by serve.
var helpHidden = map[string]bool{"admin.url": true}

// WriteHelp writes the help of `edgepass serve`: how settings are given,
// what is required, and every setting with its flag, environment variable,
// default and description, in the spelling of docs/contracts.md.
func WriteHelp(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`Usage: edgepass serve [--configFile=edgepass.yml] [--<setting>=<value> ...]

Runs the daemon: OIDC login against the IdP, sessions and edge state in NATS
JetStream (embedded, or an external cluster), /verify, and the admin API.

Settings come from, each overriding the one before: defaults, the file named
by --configFile (YAML or TOML, keys as below without the --), environment
variables (EDGEPASS_ + the setting in upper case with _ for ., e.g.
EDGEPASS_OIDC_ISSUER), then flags. Names are not case-sensitive; a list takes
commas (--session.allowedDomains=a.example.com,*.example.org); a duration
takes 30s, 5m, 12h.

Required: --oidc.issuer, --oidc.clientID, and --admin.tokenFile (or
--admin.token / EDGEPASS_ADMIN_TOKEN). Secrets are best given as files
(--oidc.clientSecretFile, --admin.tokenFile, --nats.embedded.edgePasswordFile).

Settings, with their defaults and environment variables:
`)
	writeSettings(&b, reflect.ValueOf(New()).Elem(), "")
	_, err := io.WriteString(w, b.String())
	return err
}

var durationType = reflect.TypeOf(ptypes.Duration(0))

// writeSettings lists v's settings, then its groups of settings.
func writeSettings(b *strings.Builder, v reflect.Value, prefix string) {
	t := v.Type()
	var groups []int
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		name := prefix + settingName(f)
		if helpHidden[name] {
			continue
		}
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			groups = append(groups, i)
			continue
		}
		b.WriteString("  --" + name)
		if d := defaultText(fv); d != "" {
			b.WriteString("=" + d)
		}
		b.WriteString("\n")
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, ".", "_"))
		wrap(b, f.Tag.Get("description")+" ("+env+")", "      ", 78)
	}
	for _, i := range groups {
		f := t.Field(i)
		name := prefix + settingName(f)
		fmt.Fprintf(b, "\n%s: %s\n", name, f.Tag.Get("description"))
		writeSettings(b, v.Field(i), name+".")
	}
}

// settingName is the field's name in files and flags: its json tag, or for
// fields kept out of JSON (secrets) the Go name with a lower-case start.
func settingName(f reflect.StructField) string {
	if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
		return tag
	}
	return strings.ToLower(f.Name[:1]) + f.Name[1:]
}

func defaultText(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		if v.Int() == 0 {
			return "0"
		}
		return shortDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	case v.Kind() == reflect.String:
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}

// shortDuration prints 12h rather than 12h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrap writes text in lines of at most width columns, each after indent.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
}
