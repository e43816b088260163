package deploy

// The daemon image: `make image` (integration/cmd/image, no container
// engine) and deploy/Dockerfile (for Docker users) must make the same
// image: the Makefile's link flags, user 65532, the same entrypoint,
// command and ports.

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// What the image is (deploy/Dockerfile's distroless image and make image's).
var (
	imageUser       = "65532:65532"
	imageEntrypoint = []string{"/usr/local/bin/edgepass"}
	imageCmd        = []string{"serve", "--configFile=/etc/edgepass/edgepass.yml"}
	imagePorts      = []string{"4222/tcp", "8000/tcp", "8001/tcp"}
	// imageFiles are the layer's entries: path -> uid:gid mode (type).
	imageFiles = map[string]string{
		"etc/":                              "0:0 drwxr-xr-x",
		"etc/group":                         "0:0 -rw-r--r--",
		"etc/passwd":                        "0:0 -rw-r--r--",
		"etc/ssl/":                          "0:0 drwxr-xr-x",
		"etc/ssl/certs/":                    "0:0 drwxr-xr-x",
		"etc/ssl/certs/ca-certificates.crt": "0:0 -rw-r--r--",
		"home/":                             "0:0 drwxr-xr-x",
		"home/nonroot/":                     "65532:65532 drwx------",
		"tmp/":                              "0:0 dtrwxrwxrwx",
		"usr/":                              "0:0 drwxr-xr-x",
		"usr/local/":                        "0:0 drwxr-xr-x",
		"usr/local/bin/":                    "0:0 drwxr-xr-x",
		"usr/local/bin/edgepass":            "0:0 -rwxr-xr-x",
		"var/":                              "0:0 drwxr-xr-x",
		"var/lib/":                          "0:0 drwxr-xr-x",
		"var/lib/edgepass/":                 "65532:65532 drwx------",
	}
)

// makefileLinkFlags are the -X flags of the Makefile's LDFLAGS, with
// $(VERSION)/$(COMMIT) written as VERSION/COMMIT.
func makefileLinkFlags(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Makefile has no LDFLAGS")
	}
	return linkFlagsOf(string(m[1]), `\$\((VERSION|COMMIT)\)`)
}

// linkFlagsOf extracts the -X name=value flags of a command line, the
// variables matched by varRef replaced by their bare names.
func linkFlagsOf(s, varRef string) []string {
	s = regexp.MustCompile(varRef).ReplaceAllString(s, "$1")
	var out []string
	for _, m := range regexp.MustCompile(`-X[ =]([^\s"']+)`).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

// TestImageIsMinimalNonRootAndRunsVersion builds the image as `make image`
// does, opens the tarball as an OCI layout (what skopeo's oci-archive: and
// docker/podman load read; docker's manifest.json too), validates digests
// and sizes, and checks the configuration (user, entrypoint, command,
// ports, OCI labels), that the single layer holds exactly the binary,
// passwd/group with nonroot 65532, the CA bundle and the daemon's
// directories, and that the binary from the layer runs `edgepass version`
// naming the version and commit it was built with.
func TestImageIsMinimalNonRootAndRunsVersion(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary is linux/" + runtime.GOARCH + "; run on Linux")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "edgepass-image.tar")
	const version, commit = "v0.0.0-imagetest.1", "0123456789ab"
	cmd := exec.Command("go", "run", "./cmd/image", "-version", version, "-commit", commit, "-out", out)
	cmd.Dir = filepath.Join(repoRoot(t), "integration")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./cmd/image: %v\n%s", err, b)
	}

	// The archive: an OCI layout, plus docker save's manifest.json.
	lay := filepath.Join(dir, "layout")
	names := untar(t, out, lay)
	for _, want := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !names[want] {
			t.Errorf("the archive has no %s (has %v)", want, sortedSet(names))
		}
	}
	for n := range names {
		if n != "oci-layout" && n != "index.json" && n != "manifest.json" && !strings.HasPrefix(n, "blobs/") {
			t.Errorf("the archive holds %s", n)
		}
	}
	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", desc.MediaType, types.OCIManifestSchema1)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != version {
		t.Errorf("ref.name %q, want the tag %q (skopeo oci-archive:<file>:%s)", got, version, version)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != "ghcr.io/edgepass/edgepass:"+version {
		t.Errorf("io.containerd.image.name %q", got)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the image does not validate (digests, sizes, diff ids): %v", err)
	}
	cfgName, _ := img.ConfigName()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	ld, _ := layers[0].Digest()
	var dm []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if data, err := os.ReadFile(filepath.Join(lay, "manifest.json")); err != nil || json.Unmarshal(data, &dm) != nil || len(dm) != 1 {
		t.Errorf("manifest.json: %v %v", err, dm)
	} else if dm[0].Config != "blobs/sha256/"+cfgName.Hex || len(dm[0].Layers) != 1 || dm[0].Layers[0] != "blobs/sha256/"+ld.Hex || len(dm[0].RepoTags) != 1 || dm[0].RepoTags[0] != "ghcr.io/edgepass/edgepass:"+version {
		t.Errorf("manifest.json %+v does not describe the image", dm[0])
	}

	// The configuration.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("image media type %s", mt)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	c := cf.Config
	if c.User != imageUser {
		t.Errorf("User %q, want %q", c.User, imageUser)
	}
	if !equalStrings(c.Entrypoint, imageEntrypoint) || !equalStrings(c.Cmd, imageCmd) {
		t.Errorf("Entrypoint %q Cmd %q, want %q %q", c.Entrypoint, c.Cmd, imageEntrypoint, imageCmd)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	if !equalStrings(ports, imagePorts) {
		t.Errorf("ExposedPorts %v, want %v", ports, imagePorts)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": commit,
		"org.opencontainers.image.source":   "https://github.com/edgepass/edgepass",
		"org.opencontainers.image.title":    "edgepass",
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	if c.Labels["org.opencontainers.image.licenses"] == "" {
		t.Error("no org.opencontainers.image.licenses label")
	}
	if cf.Created.Unix() != 1700000000 {
		t.Errorf("created %v, want SOURCE_DATE_EPOCH", cf.Created)
	}

	// The layer: exactly what it should hold.
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(h.Mode).Perm()
		if h.Mode&01000 != 0 {
			mode |= os.ModeSticky
		}
		if h.Typeflag == tar.TypeDir {
			mode |= os.ModeDir
		} else if h.Typeflag != tar.TypeReg {
			t.Errorf("%s: type %c; only files and directories belong here", h.Name, h.Typeflag)
		}
		got := fmt.Sprintf("%d:%d %s", h.Uid, h.Gid, mode)
		want, ok := imageFiles[h.Name]
		switch {
		case !ok:
			t.Errorf("the layer holds %s, which does not belong in the image", h.Name)
		case got != want:
			t.Errorf("%s: %s, want %s", h.Name, got, want)
		}
		if h.ModTime.Unix() != 1700000000 {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH", h.Name, h.ModTime)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
	for n := range imageFiles {
		if _, ok := files[n]; !ok {
			t.Errorf("the layer lacks %s", n)
		}
	}
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:[^:]*:/home/nonroot:`).Match(files["etc/passwd"]) {
		t.Errorf("/etc/passwd has no nonroot 65532:\n%s", files["etc/passwd"])
	}
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:`).Match(files["etc/group"]) {
		t.Errorf("/etc/group has no nonroot 65532:\n%s", files["etc/group"])
	}
	if !x509.NewCertPool().AppendCertsFromPEM(files["etc/ssl/certs/ca-certificates.crt"]) {
		t.Error("the CA bundle holds no certificate")
	}

	// The binary runs and names its build.
	bin := filepath.Join(dir, "edgepass")
	if err := os.WriteFile(bin, files["usr/local/bin/edgepass"], 0o755); err != nil {
		t.Fatal(err)
	}
	vout, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("edgepass version: %v\n%s", err, vout)
	}
	if !strings.Contains(string(vout), version) || !strings.Contains(string(vout), commit) {
		t.Errorf("edgepass version printed %q, want version %s and commit %s", vout, version, commit)
	}
	// Statically linked (CGO_ENABLED=0): no interpreter in an image without libc.
	if bytes.Contains(files["usr/local/bin/edgepass"][:4096], []byte("/lib64/ld-linux")) || bytes.Contains(files["usr/local/bin/edgepass"][:4096], []byte("/lib/ld-")) {
		t.Error("the binary is dynamically linked; the image has no libc")
	}
	// The builder links the Makefile's flags.
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "integration", "cmd", "image", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	pkg := regexp.MustCompile(`versionPackage\s*=\s*"([^"]+)"`).FindSubmatch(src)
	if pkg == nil {
		t.Fatal("cmd/image: no versionPackage")
	}
	builder := []string{string(pkg[1]) + ".Commit=COMMIT", string(pkg[1]) + ".Version=VERSION"}
	if mk := makefileLinkFlags(t); !equalStrings(mk, builder) {
		t.Errorf("the Makefile links %v, cmd/image %v", mk, builder)
	}
}

func untar(t testing.TB, file, dir string) map[string]bool {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			t.Fatalf("archive entry %q escapes", h.Name)
		}
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			names[filepath.ToSlash(name)] = true
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("archive entry %s: type %c", h.Name, h.Typeflag)
		}
	}
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// dockerInstruction is one instruction of a Dockerfile.
type dockerInstruction struct {
	Line int
	Cmd  string // upper case
	Args string
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// blank lines dropped, backslash continuations joined (the parts of the
// Dockerfile syntax deploy/Dockerfile uses; heredocs and parser directives
// other than comments are refused).
func parseDockerfile(data []byte) ([]dockerInstruction, error) {
	var out []dockerInstruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment lines inside a continuation are dropped
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		text := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		if strings.Contains(args, "<<") {
			return nil, fmt.Errorf("line %d: heredoc not understood by this parser", start)
		}
		out = append(out, dockerInstruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)})
	}
	if cur.Len() > 0 {
		return nil, errors.New("the file ends in a line continuation")
	}
	known := map[string]bool{"FROM": true, "ARG": true, "WORKDIR": true, "COPY": true, "RUN": true, "USER": true, "EXPOSE": true, "ENTRYPOINT": true, "CMD": true, "LABEL": true, "ENV": true, "ADD": true, "VOLUME": true, "HEALTHCHECK": true, "STOPSIGNAL": true, "SHELL": true, "ONBUILD": true}
	for _, in := range out {
		if !known[in.Cmd] {
			return nil, fmt.Errorf("line %d: unknown instruction %s", in.Line, in.Cmd)
		}
	}
	return out, nil
}

// TestDockerfileMatchesTheImage: deploy/Dockerfile parses; its build stage
// takes VERSION and COMMIT as build arguments and links them with the
// Makefile's flags (CGO off, -trimpath); its final stage is distroless
// static nonroot, copies only the binary (and the dataDir), and runs as
// 65532:65532 with the image's entrypoint, command and ports.
func TestDockerfileMatchesTheImage(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseDockerfile(data)
	if err != nil {
		t.Fatalf("deploy/Dockerfile: %v", err)
	}
	var stages [][]dockerInstruction
	for _, in := range ins {
		if in.Cmd == "FROM" {
			stages = append(stages, nil)
		} else if len(stages) == 0 && in.Cmd != "ARG" {
			t.Fatalf("line %d: %s before FROM", in.Line, in.Cmd)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build stage and the image", len(stages))
	}
	build, final := stages[0], stages[1]
	stageName := regexp.MustCompile(`(?i)\sAS\s+(\S+)$`).FindStringSubmatch(build[0].Args)
	if stageName == nil {
		t.Fatalf("the build stage %q has no name", build[0].Args)
	}

	args := map[string]bool{}
	var run string
	for _, in := range build {
		switch in.Cmd {
		case "ARG":
			n, _, _ := strings.Cut(in.Args, "=")
			args[n] = true
		case "RUN":
			if strings.Contains(in.Args, "go build") {
				run = in.Args
				for _, v := range []string{"VERSION", "COMMIT"} {
					if !args[v] {
						t.Errorf("line %d: go build before ARG %s: the build argument would not reach it", in.Line, v)
					}
				}
			}
		}
	}
	if run == "" {
		t.Fatal("the build stage has no RUN go build")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/edgepass"} {
		if !strings.Contains(run, want) {
			t.Errorf("go build lacks %s: %s", want, run)
		}
	}
	if got, want := linkFlagsOf(run, `\$\{?(VERSION|COMMIT)\}?`), makefileLinkFlags(t); !equalStrings(got, want) {
		t.Errorf("the Dockerfile links %v, the Makefile %v", got, want)
	}

	from := final[0].Args
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot(@sha256:[0-9a-f]{64})?$`).MatchString(from) {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static…:nonroot", from)
	}
	var user, entrypoint, cmd string
	var expose []string
	for _, in := range final {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entrypoint = in.Args
		case "CMD":
			cmd = in.Args
		case "EXPOSE":
			for _, p := range strings.Fields(in.Args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				expose = append(expose, p)
			}
		case "COPY":
			if !strings.Contains(in.Args, "--from="+stageName[1]) {
				t.Errorf("line %d: COPY %s does not come from the build stage", in.Line, in.Args)
			}
		case "RUN", "ADD":
			t.Errorf("line %d: %s in the final stage (distroless has no shell)", in.Line, in.Cmd)
		}
	}
	if user != imageUser {
		t.Errorf("USER %q, want %q", user, imageUser)
	}
	var ep, cm []string
	if json.Unmarshal([]byte(entrypoint), &ep) != nil || !equalStrings(ep, imageEntrypoint) {
		t.Errorf("ENTRYPOINT %s, want the exec form %q", entrypoint, imageEntrypoint)
	}
	if json.Unmarshal([]byte(cmd), &cm) != nil || !equalStrings(cm, imageCmd) {
		t.Errorf("CMD %s, want the exec form %q", cmd, imageCmd)
	}
	sort.Strings(expose)
	if !equalStrings(expose, imagePorts) {
		t.Errorf("EXPOSE %v, want %v", expose, imagePorts)
	}
}

// TestMakeImageTarget: `make image` is a phony target running the image
// builder with the Makefile's VERSION and COMMIT into daemon/bin.
func TestMakeImageTarget(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	mk := string(data)
	phony := regexp.MustCompile(`(?m)^\.PHONY:(.*)$`).FindStringSubmatch(mk)
	if phony == nil || !regexp.MustCompile(`(^|\s)image(\s|$)`).MatchString(phony[1]) {
		t.Error("image is not in .PHONY")
	}
	recipe := regexp.MustCompile(`(?m)^image:.*\n((?:\t.*\n)+)`).FindStringSubmatch(mk)
	if recipe == nil {
		t.Fatal("the Makefile has no image target")
	}
	for _, want := range []string{"./cmd/image", "$(VERSION)", "$(COMMIT)", "edgepass-image.tar"} {
		if !strings.Contains(recipe[1], want) {
			t.Errorf("make image's recipe lacks %s:\n%s", want, recipe[1])
		}
	}
}
