package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testMeta is what the tests build with: fixed, so that nothing depends on the checkout's state.
var testMeta = Meta{
	Version:  "v0.0.0-imagetest",
	Revision: "0123456789abcdef0123456789abcdef01234567",
	Created:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
}

// built is the first build, shared by the tests: the layouts under dir, the digests by name.
var built struct {
	once    sync.Once
	err     error
	dir     string
	digests map[string]v1.Hash
	took    time.Duration
}

var tmpRoot string

func TestMain(m *testing.M) {
	var err error
	if tmpRoot, err = os.MkdirTemp("", "wakepush-imagetest-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// mkimage is the command built once (without -race: the race detector makes compressing the
// layers minutes slower) into tmpRoot.
var mkimage struct {
	once sync.Once
	path string
	err  error
}

// buildAll runs mkimage, as `make images` does but with testMeta, to write every image's layout
// (and with tar its archive) under out, and returns the manifest digests it printed, after
// checking that the layouts hold them.
func buildAll(out string, tar bool, extraEnv ...string) (map[string]v1.Hash, time.Duration, error) {
	mkimage.once.Do(func() {
		mkimage.path = filepath.Join(tmpRoot, "mkimage")
		b, err := exec.Command("go", "build", "-o", mkimage.path, "./cmd/mkimage").CombinedOutput()
		if err != nil {
			mkimage.err = fmt.Errorf("go build ./cmd/mkimage: %v\n%s", err, b)
		}
	})
	if mkimage.err != nil {
		return nil, 0, mkimage.err
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, 0, err
	}
	args := []string{"-root", root, "-out", out, "-arch", runtime.GOARCH, "-version", testMeta.Version,
		"-revision", testMeta.Revision, "-created", testMeta.Created.Format(time.RFC3339)}
	if tar {
		args = append(args, "-tar")
	}
	start := time.Now()
	cmd := exec.Command(mkimage.path, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("mkimage %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	took := time.Since(start)
	// mkimage prints: name reference digest size.
	digests := map[string]v1.Hash{}
	for _, l := range strings.Split(stdout.String(), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasPrefix(f[2], "sha256:") {
			continue
		}
		if f[1] != "ghcr.io/wakepush/"+f[0]+":"+testMeta.Version {
			return nil, 0, fmt.Errorf("mkimage printed the reference %s for %s", f[1], f[0])
		}
		if digests[f[0]], err = v1.NewHash(f[2]); err != nil {
			return nil, 0, err
		}
	}
	if len(digests) != len(Targets) {
		return nil, 0, fmt.Errorf("mkimage printed %d digests, want %d:\n%s", len(digests), len(Targets), stdout.String())
	}
	for n, d := range digests {
		p, err := layout.FromPath(filepath.Join(out, n))
		if err != nil {
			return nil, 0, err
		}
		idx, err := p.ImageIndex()
		if err != nil {
			return nil, 0, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, 0, err
		}
		if len(im.Manifests) != 1 || im.Manifests[0].Digest != d {
			return nil, 0, fmt.Errorf("%s: mkimage printed %s, the layout holds %v", n, d, im.Manifests)
		}
	}
	return digests, took, nil
}

// first returns the shared first build; every test that needs it reports its failure.
func first(t *testing.T) (string, map[string]v1.Hash) {
	t.Helper()
	built.once.Do(func() {
		built.dir = filepath.Join(tmpRoot, "first")
		built.digests, built.took, built.err = buildAll(built.dir, true)
		t.Logf("first build of %d images: %s", len(Targets), built.took.Round(time.Millisecond))
	})
	if built.err != nil {
		t.Fatalf("first build failed: %v", built.err)
	}
	return built.dir, built.digests
}

// readImage reads target name's image back from its layout and checks the index around it.
func readImage(t *testing.T, dir, name string) (v1.Image, v1.Descriptor) {
	t.Helper()
	p, err := layout.FromPath(filepath.Join(dir, name))
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
		t.Fatalf("index.json has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", desc.MediaType)
	}
	wantAnn := map[string]string{
		"org.opencontainers.image.ref.name": testMeta.Version,
		"io.containerd.image.name":          "ghcr.io/wakepush/" + name + ":" + testMeta.Version,
	}
	if !reflect.DeepEqual(desc.Annotations, wantAnn) {
		t.Errorf("index annotations %v, want %v", desc.Annotations, wantAnn)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img, desc
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func layerEntries(t *testing.T, l v1.Layer) []entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h, b})
	}
}

// TestImages reads every image back from its OCI layout and checks its config, labels and layers,
// down to the binary's build settings.
func TestImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries")
	}
	dir, digests := first(t)
	hostCA, err := os.ReadFile(CAFile)
	if err != nil {
		t.Fatal(err)
	}
	var baseDigest v1.Hash
	for _, tg := range Targets {
		t.Run(tg.Name, func(t *testing.T) {
			img, desc := readImage(t, dir, tg.Name)
			if desc.Digest != digests[tg.Name] {
				t.Errorf("layout holds %s, built %s", desc.Digest, digests[tg.Name])
			}
			checkTarball(t, filepath.Join(dir, tg.Name+".tar"), tg, img)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("media types %s / %s", m.MediaType, m.Config.MediaType)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
			}
			if !cf.Created.Time.Equal(testMeta.Created) {
				t.Errorf("created %v, want the commit time %v", cf.Created.Time, testMeta.Created)
			}
			c := cf.Config
			if want := []string{"/usr/local/bin/" + tg.Name}; !reflect.DeepEqual(c.Entrypoint, want) {
				t.Errorf("entrypoint %q, want %q", c.Entrypoint, want)
			}
			if len(c.Cmd) != 0 {
				t.Errorf("cmd %q, want none", c.Cmd)
			}
			if c.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", c.User)
			}
			if want := []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}; !reflect.DeepEqual(c.Env, want) {
				t.Errorf("env %q, want %q", c.Env, want)
			}
			if c.WorkingDir != "/" || len(c.ExposedPorts) != 0 || len(c.Volumes) != 0 {
				t.Errorf("workdir %q, ports %v, volumes %v", c.WorkingDir, c.ExposedPorts, c.Volumes)
			}
			wantLabels := map[string]string{
				"org.opencontainers.image.title":       tg.Name,
				"org.opencontainers.image.description": tg.Description,
				"org.opencontainers.image.source":      "https://github.com/wakepush/wakepush",
				"org.opencontainers.image.revision":    "0123456789abcdef0123456789abcdef01234567",
				"org.opencontainers.image.version":     "v0.0.0-imagetest",
				"org.opencontainers.image.created":     "2026-01-02T03:04:05Z",
			}
			if !reflect.DeepEqual(c.Labels, wantLabels) {
				t.Errorf("labels %v\nwant %v", c.Labels, wantLabels)
			}
			if len(cf.History) != 2 {
				t.Errorf("%d history entries, want 2", len(cf.History))
			}

			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != 2 || len(m.Layers) != 2 || len(cf.RootFS.DiffIDs) != 2 {
				t.Fatalf("%d layers (manifest %d, diff ids %d), want 2: base and binary", len(layers), len(m.Layers), len(cf.RootFS.DiffIDs))
			}
			for _, l := range m.Layers {
				if l.MediaType != types.OCILayer {
					t.Errorf("layer media type %s", l.MediaType)
				}
			}
			// Every image shares the base layer byte for byte.
			if baseDigest == (v1.Hash{}) {
				baseDigest = m.Layers[0].Digest
			} else if m.Layers[0].Digest != baseDigest {
				t.Errorf("base layer %s differs from the first image's %s", m.Layers[0].Digest, baseDigest)
			}

			base := layerEntries(t, layers[0])
			checkEntries(t, base, []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt"})
			for _, e := range base {
				switch e.hdr.Name {
				case "etc/ssl/certs/ca-certificates.crt":
					if !bytes.Equal(e.data, hostCA) {
						t.Errorf("CA bundle differs from %s", CAFile)
					}
				case "etc/passwd":
					if !strings.Contains(string(e.data), "\nnonroot:x:65532:65532:") {
						t.Errorf("/etc/passwd has no user 65532:\n%s", e.data)
					}
				case "etc/group":
					if !strings.Contains(string(e.data), "\nnonroot:x:65532:") {
						t.Errorf("/etc/group has no group 65532:\n%s", e.data)
					}
				}
			}

			binEntries := layerEntries(t, layers[1])
			checkEntries(t, binEntries, []string{"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/" + tg.Name})
			bin := binEntries[len(binEntries)-1]
			if bin.hdr.Mode != 0o755 {
				t.Errorf("binary mode %o, want 755", bin.hdr.Mode)
			}
			checkBinary(t, tg, bin.data)
		})
	}
}

// checkTarball checks that the docker-load archive holds the layout's image under its reference.
func checkTarball(t *testing.T, file string, tg Target, img v1.Image) {
	t.Helper()
	ref, err := name.NewTag(Ref(tg.Name, testMeta.Version))
	if err != nil {
		t.Fatal(err)
	}
	timg, err := tarball.ImageFromPath(file, &ref)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, f := range []func(v1.Image) (v1.Hash, error){
		func(i v1.Image) (v1.Hash, error) { return i.ConfigName() },
		func(i v1.Image) (v1.Hash, error) {
			ls, err := i.Layers()
			if err != nil || len(ls) == 0 {
				return v1.Hash{}, fmt.Errorf("%d layers: %v", len(ls), err)
			}
			return ls[len(ls)-1].Digest()
		},
	} {
		want, err1 := f(img)
		got, err2 := f(timg)
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("%s: %s, the layout has %s (%v, %v)", file, got, want, err1, err2)
		}
	}
}

// checkEntries checks the tar entries' names, order, owner and mtime 0.
func checkEntries(t *testing.T, es []entry, want []string) {
	t.Helper()
	var names []string
	for _, e := range es {
		names = append(names, e.hdr.Name)
		h := e.hdr
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want 0", h.Name, h.ModTime)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		wantMode := int64(0o644)
		if h.Typeflag == tar.TypeDir || strings.HasPrefix(h.Name, "usr/local/bin/") {
			wantMode = 0o755
		}
		if h.Mode != wantMode {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, wantMode)
		}
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("layer holds %q, want %q", names, want)
	}
}

// checkBinary checks that the binary is static, stripped and built with the settings GoBuildFlags
// promises: what `go version -m` would show.
func checkBinary(t *testing.T, tg Target, bin []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("binary is not ELF: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary is dynamically linked (program header %v)", p.Type)
		}
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("binary is not stripped: section %s", s.Name)
		}
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/wakepush/wakepush/services/" + tg.Name; bi.Path != want {
		t.Errorf("main package %s, want %s", bi.Path, want)
	}
	// The modules the binary links, as it records them: its allow-list and no test code
	// (modules_test.go).
	modules := []string{bi.Main.Path}
	for _, d := range bi.Deps {
		modules = append(modules, d.Path)
	}
	sort.Strings(modules)
	for _, p := range linkProblems(tg.Name, modules) {
		t.Error(p)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	// With -trimpath the go command does not record -ldflags: the ELF checks above show -s -w,
	// the version string below shows -X.
	want := map[string]string{
		"CGO_ENABLED": "0",
		"-trimpath":   "true",
		"-tags":       "timetzdata",
		"GOOS":        "linux",
		"GOARCH":      runtime.GOARCH,
	}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], v)
		}
	}
	if _, ok := settings["vcs.revision"]; ok {
		t.Errorf("binary carries VCS stamping (not reproducible from a tarball): %v", settings)
	}
	if bi.GoVersion != runtime.Version() {
		t.Errorf("built with %s, the test runs %s", bi.GoVersion, runtime.Version())
	}
	// The four services link services/internal/service, so -X must have stamped the version;
	// a wrong VersionVar would be ignored by the linker without a word.
	if tg.Name != "wakepushctl" && !bytes.Contains(bin, []byte(testMeta.Version)) {
		t.Errorf("binary does not contain the version %q: -X %s had no effect", testMeta.Version, VersionVar)
	}
}

// TestReproducible builds everything a second time, into another directory, and expects the same
// manifest digests. With WAKEPUSH_IMAGES_COLD=1 the second build uses an empty GOCACHE, so that
// every package is compiled again (minutes) rather than taken from the build cache.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries twice")
	}
	_, want := first(t)
	var env []string
	if os.Getenv("WAKEPUSH_IMAGES_COLD") == "1" {
		env = append(env, "GOCACHE="+t.TempDir())
	}
	got, took, err := buildAll(filepath.Join(tmpRoot, "second"), false, env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second build: %s (cold GOCACHE: %v)", took.Round(time.Millisecond), len(env) > 0)
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if got[n] != want[n] {
			t.Errorf("%s: second build %s, first %s", n, got[n], want[n])
		} else {
			t.Logf("%-12s %s", n, got[n])
		}
	}
}

// TestImageDependsOnInputs guards the reproducibility test against passing trivially: another
// revision, time or binary must change the digest.
func TestImageDependsOnInputs(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("not a real bundle\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := BaseLayer(ca)
	if err != nil {
		t.Fatal(err)
	}
	tg := Targets[0]
	digest := func(m Meta, bin string) v1.Hash {
		img, err := Image(tg, m, "amd64", base, []byte(bin))
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d0 := digest(testMeta, "binary")
	if again := digest(testMeta, "binary"); again != d0 {
		t.Fatalf("same inputs, different digests: %s, %s", d0, again)
	}
	other := testMeta
	other.Revision = strings.Repeat("f", 40)
	later := testMeta
	later.Created = testMeta.Created.Add(time.Second)
	for what, d := range map[string]v1.Hash{
		"revision": digest(other, "binary"),
		"created":  digest(later, "binary"),
		"binary":   digest(testMeta, "binary2"),
	} {
		if d == d0 {
			t.Errorf("another %s gives the same digest %s", what, d)
		}
	}
}

// TestGitMeta checks the defaults `make images` takes from the checkout.
func TestGitMeta(t *testing.T) {
	root := repoRoot(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	m, err := GitMeta(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%H %cI").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	ct, err := time.Parse(time.RFC3339, f[1])
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != f[0] || !m.Created.Equal(ct) {
		t.Errorf("GitMeta %+v, git log says %s", m, out)
	}
	if !strings.Contains(m.Version, f[0][:12]) && !strings.HasPrefix(m.Version, "v") {
		t.Errorf("version %q names neither the commit nor a tag", m.Version)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if m, err = GitMeta(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	if !m.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("SOURCE_DATE_EPOCH ignored: created %v", m.Created)
	}
}
