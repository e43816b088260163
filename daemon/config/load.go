package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/traefik/paerser/env"
	"github.com/traefik/paerser/file"
	"github.com/traefik/paerser/flag"
	"github.com/traefik/paerser/parser"
)

// Load builds the configuration from defaults, then the file named by
// --configFile (or EDGEPASS_CONFIGFILE), then EDGEPASS_* variables, then
// flags: each layer overrides the previous one setting by setting. Secret
// files are read, derived defaults filled and the result validated, so a
// returned configuration is ready to use.
func Load(args, environ []string) (*Configuration, error) {
	cfg, err := decode(args, environ)
	if err != nil {
		return nil, err
	}
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decode layers defaults, file, environment and flags, without reading
// secret files or validating.
func decode(args, environ []string) (*Configuration, error) {
	cfg := New()

	path, err := configFilePath(args, environ, cfg)
	if err != nil {
		return nil, err
	}
	if path != "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yml", ".yaml", ".toml":
		default:
			return nil, fmt.Errorf("config: configFile: %s: unsupported extension; use .yml, .yaml or .toml", path)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("config: configFile: %w; check --configFile", err)
		}
		if err := file.Decode(path, cfg); err != nil {
			return nil, fmt.Errorf("config: configFile %s: %w; edgepass serve --help lists the settings", path, unknownHint(err))
		}
		cfg.ConfigFile = path
	}

	if vars := env.FindPrefixedEnvVars(environ, EnvPrefix, cfg); len(vars) > 0 {
		if err := env.Decode(vars, EnvPrefix, cfg); err != nil {
			return nil, fmt.Errorf("config: environment (%s*): %w", EnvPrefix, unknownHint(err))
		}
	}

	if len(args) > 0 {
		if err := flag.Decode(args, cfg); err != nil {
			return nil, fmt.Errorf("config: flags: %w; see edgepass serve --help", unknownHint(err))
		}
	}
	return cfg, nil
}

// configFilePath finds --configFile in the flags, else EDGEPASS_CONFIGFILE.
func configFilePath(args, environ []string, cfg *Configuration) (string, error) {
	ref, err := flag.Parse(args, cfg)
	if err != nil {
		return "", fmt.Errorf("config: flags: %w; see edgepass serve --help", err)
	}
	for k, v := range ref {
		if strings.EqualFold(k, parser.DefaultRootName+".configFile") {
			return v, nil
		}
	}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, EnvPrefix+"CONFIGFILE") {
			return v, nil
		}
	}
	return "", nil
}

// complete reads secret files, fills defaults derived from other settings
// (allowed domains and default redirect from publicURL) and validates.
func (c *Configuration) complete() error {
	if err := c.readSecrets(); err != nil {
		return err
	}
	c.setDerived()
	return c.Validate()
}

func (c *Configuration) readSecrets() error {
	var errs []error
	read := func(name, fileSetting, path string, dst *string) {
		if path == "" {
			return
		}
		if *dst != "" {
			errs = append(errs, fmt.Errorf("config: %s: set either %s or %s, not both", fileSetting, name, fileSetting))
			return
		}
		s, err := ReadSecretFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w; check %s", fileSetting, err, hint(fileSetting)))
			return
		}
		*dst = s
	}
	read("oidc.clientSecret", "oidc.clientSecretFile", c.OIDC.ClientSecretFile, &c.OIDC.ClientSecret)
	read("admin.token", "admin.tokenFile", c.Admin.TokenFile, &c.Admin.Token)
	read("nats.password", "nats.passwordFile", c.NATS.PasswordFile, &c.NATS.Password)
	read("nats.token", "nats.tokenFile", c.NATS.TokenFile, &c.NATS.Token)
	errs = append(errs, c.readAdminTokens()...)
	return errors.Join(errs...)
}

// ReadSecretFile reads a secret from a file, dropping surrounding whitespace
// (editors and `echo` add a trailing newline). An empty secret is an error.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

func (c *Configuration) setDerived() {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.DataDir != "" {
		if c.NATS.Embedded.DataDir == "" {
			c.NATS.Embedded.DataDir = filepath.Join(c.DataDir, "nats")
		}
		if c.Keys.EncryptionKeyFile == "" {
			c.Keys.EncryptionKeyFile = filepath.Join(c.DataDir, "encryption.key")
		}
	}
	// oidc.usernameClaim, the older form of oidc.userClaims, applies when
	// userClaims was left at its default (Validate refuses a contradiction).
	if c.OIDC.UsernameClaim != "" && slices.Equal(c.OIDC.UserClaims, DefaultUserClaims) {
		c.OIDC.UserClaims = usernameClaimOrder(c.OIDC.UsernameClaim)
	}
	c.deriveConsole()
	host := publicHost(c.PublicURL)
	if len(c.Session.AllowedDomains) == 0 && host != "" {
		c.Session.AllowedDomains = []string{host}
	}
	if c.Session.DefaultRedirect == "" && host != "" {
		c.Session.DefaultRedirect = c.PublicURL + "/"
	}
}

// CredentialsDir is where the embedded NATS server's generated credentials
// live (the daemon's and one password file per edge).
func (c *Configuration) CredentialsDir() string {
	return filepath.Join(c.DataDir, "credentials")
}

// hint names the flag and the environment variable of a setting, for errors.
func hint(setting string) string {
	envName := EnvPrefix + strings.ToUpper(strings.ReplaceAll(setting, ".", "_"))
	return "--" + setting + " or " + envName
}
