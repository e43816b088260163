// Command image builds the edgepass daemon's container image without a
// container engine: it compiles the daemon (CGO_ENABLED=0, -trimpath, the
// version link flags of the Makefile's build target) and writes one OCI
// image, a single layer on no base image, as an OCI layout in a tar file
// (`make image` → daemon/bin/edgepass-image.tar):
//
//	skopeo copy oci-archive:daemon/bin/edgepass-image.tar docker://ghcr.io/edgepass/edgepass:v0.1.0
//	docker load -i daemon/bin/edgepass-image.tar   # or podman load
//
// The layer holds /usr/local/bin/edgepass, /etc/passwd and /etc/group with
// user nonroot (65532), the build machine's CA certificates, and the
// directories the daemon writes to (/var/lib/edgepass, /home/nonroot, /tmp).
// The image runs as 65532:65532, like deploy/Dockerfile's distroless image.
// Timestamps come from SOURCE_DATE_EPOCH, else the commit's time, so the
// same source and toolchain give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgepass/edgepass/integration/harness"
)

// What the image is; integration/deploy checks the built image against these.
const (
	// versionPackage is the package whose Version and Commit the link flags set.
	versionPackage = "github.com/edgepass/edgepass/daemon/version"
	binaryPath     = "/usr/local/bin/edgepass"
	imageUser      = "65532:65532"
	configFile     = "/etc/edgepass/edgepass.yml"
	source         = "https://github.com/edgepass/edgepass"
	dataDir        = "/var/lib/edgepass"
	caCertsPath    = "/etc/ssl/certs/ca-certificates.crt"
)

// caCandidates are where Linux distributions keep the CA bundle.
var caCandidates = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",             // openSUSE
	"/etc/ssl/cert.pem",                  // Alpine, macOS
}

type options struct {
	repo, out, version, commit, repository, arch, caFile, license string
	created                                                       time.Time
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "output file (default <repo>/daemon/bin/edgepass-image.tar)")
	flag.StringVar(&o.version, "version", "dev", "release (git describe), linked into the binary and the image tag")
	flag.StringVar(&o.commit, "commit", "", "source revision, linked into the binary")
	flag.StringVar(&o.repository, "repository", "ghcr.io/edgepass/edgepass", "image name the tag goes with")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the image (linux only)")
	flag.StringVar(&o.caFile, "cacerts", "", "CA bundle to ship (default: the build machine's)")
	flag.StringVar(&o.license, "license", "NOASSERTION", "SPDX expression for the org.opencontainers.image.licenses label")
	flag.Parse()
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o *options) error {
	var err error
	if o.repo, err = harness.RepoRoot(); err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(o.repo, "daemon", "bin", "edgepass-image.tar")
	}
	if o.out, err = filepath.Abs(o.out); err != nil {
		return err
	}
	if !validTag(o.version) {
		return fmt.Errorf("-version %q cannot be an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", o.version)
	}
	if o.created, err = sourceDate(o.repo); err != nil {
		return err
	}
	if o.caFile == "" {
		for _, c := range caCandidates {
			if _, err := os.Stat(c); err == nil {
				o.caFile = c
				break
			}
		}
		if o.caFile == "" {
			return fmt.Errorf("no CA bundle in %v; pass -cacerts", caCandidates)
		}
	}
	ca, err := os.ReadFile(o.caFile)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return fmt.Errorf("-cacerts %s holds no PEM certificate", o.caFile)
	}

	tmp, err := os.MkdirTemp("", "edgepass-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "edgepass")
	start := time.Now()
	if err := buildDaemon(o, bin); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "image: built the daemon (linux/%s, %s) in %s\n", o.arch, o.version, time.Since(start).Round(time.Millisecond))
	binary, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	layerTar, err := rootfs(binary, ca, o.created)
	if err != nil {
		return err
	}
	img, err := image(o, layerTar)
	if err != nil {
		return err
	}
	if err := writeArchive(o, img, tmp); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Fprintf(os.Stderr, "image: wrote %s (%s:%s, %s)\n", o.out, o.repository, o.version, d)
	fmt.Println(o.out)
	return nil
}

// linkFlags are the Makefile's LDFLAGS for a version and commit.
func linkFlags(version, commit string) string {
	return fmt.Sprintf("-X %s.Version=%s -X %s.Commit=%s", versionPackage, version, versionPackage, commit)
}

// buildDaemon compiles the daemon as the Makefile's build target does, for
// linux/<arch>.
func buildDaemon(o *options, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", linkFlags(o.version, o.commit), "-o", out, "./cmd/edgepass")
	cmd.Dir = filepath.Join(o.repo, "daemon")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/edgepass (in %s): %v\n%s", cmd.Dir, err, buf.String())
	}
	return nil
}

// sourceDate is SOURCE_DATE_EPOCH, else the time of the checked-out commit,
// else the Unix epoch.
func sourceDate(repo string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %v", s, err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	cmd := exec.Command("git", "log", "-1", "--format=%ct")
	cmd.Dir = repo
	if out, err := cmd.Output(); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0).UTC(), nil
		}
	}
	return time.Unix(0, 0).UTC(), nil
}

func validTag(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// passwd and group are the image's /etc/passwd and /etc/group (the users of
// distroless's nonroot images).
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
)

// entry is one file or directory of the layer.
type entry struct {
	Path     string // without a leading slash; directories end in "/"
	Mode     int64
	UID, GID int
	Data     []byte
}

// entries are the layer's contents, in order (directories before what
// they hold).
func entries(binary, ca []byte) []entry {
	dir := func(p string, mode int64, id int) entry { return entry{Path: p, Mode: mode, UID: id, GID: id} }
	return []entry{
		dir("etc/", 0o755, 0),
		{Path: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		dir("etc/ssl/", 0o755, 0),
		dir("etc/ssl/certs/", 0o755, 0),
		{Path: strings.TrimPrefix(caCertsPath, "/"), Mode: 0o644, Data: ca},
		dir("home/", 0o755, 0),
		dir("home/nonroot/", 0o700, 65532),
		dir("tmp/", 0o1777, 0),
		dir("usr/", 0o755, 0),
		dir("usr/local/", 0o755, 0),
		dir("usr/local/bin/", 0o755, 0),
		{Path: strings.TrimPrefix(binaryPath, "/"), Mode: 0o755, Data: binary},
		dir("var/", 0o755, 0),
		dir("var/lib/", 0o755, 0),
		// The daemon's dataDir (the chart mounts an emptyDir here; a Docker
		// named volume copies this owner).
		dir(strings.TrimPrefix(dataDir, "/")+"/", 0o700, 65532),
	}
}

// rootfs is the layer as an uncompressed tar.
func rootfs(binary, ca []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries(binary, ca) {
		h := &tar.Header{Name: e.Path, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: mtime, Format: tar.FormatPAX}
		if strings.HasSuffix(e.Path, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// labels are the image's OCI labels.
func labels(version, commit, license string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "edgepass",
		"org.opencontainers.image.description": "edgepass daemon: OIDC login, sessions and edge state for the edgepass Traefik plugin",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    commit,
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.url":         source,
		"org.opencontainers.image.licenses":    license,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
}

func image(o *options, layerTar []byte) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: o.created}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "integration/cmd/image (make image)", Comment: "edgepass " + o.version},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.arch
	cf.OS = "linux"
	cf.Created = created
	cf.Config = v1.Config{
		User:       imageUser,
		Entrypoint: []string{binaryPath},
		Cmd:        []string{"serve", "--configFile=" + configFile},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		WorkingDir: "/home/nonroot",
		ExposedPorts: map[string]struct{}{
			"8000/tcp": {}, // browser endpoints
			"8001/tcp": {}, // admin API
			"4222/tcp": {}, // embedded NATS (single-process install)
		},
		Labels: labels(o.version, o.commit, o.license, o.created),
	}
	return mutate.ConfigFile(img, cf)
}

// refName is the tag in the OCI index (skopeo's oci-archive:<file>:<tag>);
// imageName the full name container engines load it as.
func refName(version string) string               { return version }
func imageName(repository, version string) string { return repository + ":" + version }

// writeArchive writes img as an OCI layout (plus the manifest.json of
// `docker save`, for Docker engines before 25) into a tar at o.out.
func writeArchive(o *options, img v1.Image, tmp string) error {
	dir := filepath.Join(tmp, "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	name := imageName(o.repository, o.version)
	if err := p.AppendImage(img,
		layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": refName(o.version),
			"io.containerd.image.name":          name,
		}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: o.arch}),
	); err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerFiles []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		layerFiles = append(layerFiles, "blobs/sha256/"+d.Hex)
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":   "blobs/sha256/" + cfgName.Hex,
		"RepoTags": []string{name},
		"Layers":   layerFiles,
	}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), dockerManifest, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	part := o.out + ".tmp"
	f, err := os.Create(part)
	if err != nil {
		return err
	}
	defer os.Remove(part)
	if err := tarDir(f, dir, o.created); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(part, o.out)
}

// tarDir writes the files under dir into a tar, in name order, with fixed
// owners, modes and times.
func tarDir(w io.Writer, dir string, mtime time.Time) error {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	tw := tar.NewWriter(w)
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: rel, ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Name, h.Mode, h.Typeflag = rel+"/", 0o755, tar.TypeDir
		case fi.Mode().IsRegular():
			h.Size = fi.Size()
		default:
			return fmt.Errorf("%s: not a regular file", path)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
