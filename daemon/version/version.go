// Package version is the daemon's build identity, set at link time by
// `make build` (-ldflags -X …Version=$(git describe …)) and shown by
// `edgepass version`, the start-up log line and the edgepass_build_info
// metric, so an operator can tell which release answers.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release (a git tag such as v0.2.0, or git describe's
// v0.2.0-3-gabc1234); "dev" when built without make.
var Version = "dev"

// Commit is the source revision (first 12 hex digits), from the link flags
// or else from the Go build information.
var Commit = ""

// Info is the build identity.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

// Get returns the build identity, filling what the link flags left out from
// the binary's build information (module version, VCS revision).
func Get() Info {
	i := Info{Version: Version, Commit: Commit, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && i.Commit == "" && len(s.Value) >= 12 {
				i.Commit = s.Value[:12]
			}
		}
	}
	return i
}

// String is the one-line form `edgepass version` prints.
func (i Info) String() string {
	s := "edgepass " + i.Version
	if i.Commit != "" {
		s += " (" + i.Commit + ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, i.Go, i.OS, i.Arch)
}
