package harness

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// PluginSources lists the plugin's source files as Traefik loads them: the
// non-test .go files under <repo>/plugin, outside testdata, as paths
// relative to repo in path order.
func PluginSources(repo string) ([]string, error) {
	return pluginGoFiles(repo, false)
}

// pluginGoFiles lists the .go files under <repo>/plugin outside testdata,
// the _test.go files or the others, as paths relative to repo in path
// order.
func pluginGoFiles(repo string, tests bool) ([]string, error) {
	var files []string
	err := filepath.WalkDir(filepath.Join(repo, "plugin"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && strings.HasSuffix(path, "_test.go") == tests {
			rel, err := filepath.Rel(repo, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// CopyPluginTo lays the plugin module out as Traefik downloads it: go.mod,
// .traefik.yml and PluginSources under <goPath>/src/<PluginModule> (the
// directory is replaced).
func CopyPluginTo(repo, goPath string) error {
	dst := filepath.Join(goPath, "src", filepath.FromSlash(PluginModule))
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("harness: copy plugin: %w", err)
	}
	files, err := PluginSources(repo)
	if err != nil {
		return fmt.Errorf("harness: copy plugin: %w", err)
	}
	for _, f := range append([]string{"go.mod", ".traefik.yml"}, files...) {
		if err := copyFile(filepath.Join(repo, f), filepath.Join(dst, f)); err != nil {
			return fmt.Errorf("harness: copy plugin: %w", err)
		}
	}
	return nil
}

// PluginTestFiles lists the plugin's _test.go files (paths relative to repo,
// in path order), for running the packages' own tests under Yaegi.
func PluginTestFiles(repo string) ([]string, error) {
	return pluginGoFiles(repo, true)
}

// CopyFilesTo copies files (paths relative to repo) into the plugin's tree
// under <goPath>/src/<PluginModule>, next to what CopyPluginTo put there.
func CopyFilesTo(repo, goPath string, files []string) error {
	dst := filepath.Join(goPath, "src", filepath.FromSlash(PluginModule))
	for _, f := range files {
		if err := copyFile(filepath.Join(repo, f), filepath.Join(dst, f)); err != nil {
			return fmt.Errorf("harness: copy plugin file: %w", err)
		}
	}
	return nil
}

// CopyPlugin copies the plugin to <dir>/plugins-local, where Traefik's
// localPlugins finds it.
func CopyPlugin(repo, dir string) error {
	return CopyPluginTo(repo, filepath.Join(dir, "plugins-local"))
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
