// Package yaegi_test loads the edgepass plugin from source under yaegi v0.16.1
// exactly as Traefik v3 does (GoPath layout, stdlib symbols only, no unsafe,
// config decoded with mapstructure from a map) and exercises it there.
package yaegi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mitchellh/mapstructure"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
	"gopkg.in/yaml.v3"

	"github.com/edgepass/edgepass/integration/harness"
)

// manifest is the part of .traefik.yml Traefik uses to load a middleware.
type manifest struct {
	DisplayName string         `yaml:"displayName"`
	Type        string         `yaml:"type"`
	Import      string         `yaml:"import"`
	BasePkg     string         `yaml:"basePkg"`
	TestData    map[string]any `yaml:"testData"`
}

// loaded is the interpreted plugin: its New and CreateConfig as Traefik holds them.
type loaded struct {
	interp         *interp.Interpreter
	manifest       manifest
	fnNew          reflect.Value
	fnCreateConfig reflect.Value
}

var (
	loadOnce sync.Once
	loadedP  *loaded
	loadErr  error
)

// testSeed is RFC 8032 test vector 1; its public key is the one in .traefik.yml's testData.
var testPriv = func() ed25519.PrivateKey {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	return ed25519.NewKeyFromSeed(seed)
}()

// plugin loads the plugin once per test binary (interpreting it takes a while).
func plugin(tb testing.TB) *loaded {
	tb.Helper()
	loadOnce.Do(func() { loadedP, loadErr = load() })
	if loadErr != nil {
		tb.Fatalf("load plugin under yaegi: %v", loadErr)
	}
	return loadedP
}

func load() (*loaded, error) {
	root, err := harness.RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, ".traefik.yml"))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf(".traefik.yml: %w", err)
	}
	if m.Type != "middleware" || m.Import == "" {
		return nil, fmt.Errorf(".traefik.yml: want type middleware and an import, got %+v", m)
	}
	goPath, err := os.MkdirTemp("", "edgepass-yaegi-")
	if err != nil {
		return nil, err
	}
	// The module as Traefik downloads it, under $GOPATH/src/<module>.
	if err := harness.CopyPluginTo(root, goPath); err != nil {
		return nil, err
	}

	i := interp.New(interp.Options{GoPath: goPath, Env: os.Environ()})
	if err := i.Use(stdlib.Symbols); err != nil {
		return nil, err
	}
	if _, err := i.Eval(fmt.Sprintf(`import %q`, m.Import)); err != nil {
		return nil, fmt.Errorf("import %s: %w", m.Import, err)
	}
	basePkg := m.BasePkg
	if basePkg == "" {
		basePkg = strings.ReplaceAll(path.Base(m.Import), "-", "_")
	}
	fnNew, err := i.Eval(basePkg + ".New")
	if err != nil {
		return nil, fmt.Errorf("eval New: %w", err)
	}
	fnCreate, err := i.Eval(basePkg + ".CreateConfig")
	if err != nil {
		return nil, fmt.Errorf("eval CreateConfig: %w", err)
	}
	return &loaded{interp: i, manifest: m, fnNew: fnNew, fnCreateConfig: fnCreate}, nil
}

// evalFunc evaluates program (declarations) in the plugin's interpreter and
// returns its function name, to be asserted to its type.
func (p *loaded) evalFunc(tb testing.TB, program, name string) any {
	tb.Helper()
	if _, err := p.interp.Eval(program); err != nil {
		tb.Fatalf("eval the program declaring %s: %v", name, err)
	}
	fn, err := p.interp.Eval(name)
	if err != nil {
		tb.Fatalf("eval %s: %v", name, err)
	}
	return fn.Interface()
}

// createConfig calls CreateConfig and decodes config into the result the
// way Traefik does (pkg/plugins/middlewareyaegi.go: mapstructure with
// StringToSliceHookFunc(",") and WeaklyTypedInput); it returns the
// pointer CreateConfig returned.
func (p *loaded) createConfig(config map[string]any) (reflect.Value, error) {
	results := p.fnCreateConfig.Call(nil)
	if len(results) != 1 {
		return reflect.Value{}, fmt.Errorf("CreateConfig returned %d values", len(results))
	}
	vConfig := results[0]
	if len(config) > 0 {
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			DecodeHook:       mapstructure.StringToSliceHookFunc(","),
			WeaklyTypedInput: true,
			Result:           vConfig.Interface(),
		})
		if err != nil {
			return reflect.Value{}, err
		}
		if err := dec.Decode(config); err != nil {
			return reflect.Value{}, fmt.Errorf("decode configuration: %w", err)
		}
	}
	return vConfig, nil
}

// newHandler builds a middleware from a config map the way Traefik does:
// createConfig, then New.
func (p *loaded) newHandler(next http.Handler, config map[string]any, name string) (http.Handler, error) {
	vConfig, err := p.createConfig(config)
	if err != nil {
		return nil, err
	}
	out := p.fnNew.Call([]reflect.Value{reflect.ValueOf(context.Background()), reflect.ValueOf(next), vConfig, reflect.ValueOf(name)})
	if len(out) > 1 && out[1].Interface() != nil {
		err, ok := out[1].Interface().(error)
		if !ok {
			return nil, fmt.Errorf("invalid error type %T", out[1].Interface())
		}
		return nil, err
	}
	h, ok := out[0].Interface().(http.Handler)
	if !ok {
		return nil, fmt.Errorf("invalid handler type %T", out[0].Interface())
	}
	return h, nil
}

// decodedConfig returns the interpreted Config after Traefik-style decoding of config.
func (p *loaded) decodedConfig(tb testing.TB, config map[string]any) reflect.Value {
	tb.Helper()
	v, err := p.createConfig(config)
	if err != nil {
		tb.Fatal(err)
	}
	return v.Elem()
}
