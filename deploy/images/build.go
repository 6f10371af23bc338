package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options say how to build.
type Options struct {
	Root   string // repository root (holds go.work)
	Go     string // go command; "go" when empty
	GOARCH string // target architecture (linux only); required
	CAFile string // the CA bundle to copy; CAFile when empty
	Meta   Meta
	// Env is added to the go command's environment (e.g. GOCACHE).
	Env []string
	// Stderr receives the go command's output; os.Stderr when nil.
	Stderr io.Writer
}

// Built is one image.
type Built struct {
	Target Target
	Ref    string // Registry/name:version
	Image  v1.Image
}

// BuildBinaries compiles every target into dir with one `go build` (the packages share the build).
func BuildBinaries(ctx context.Context, o Options, targets []Target, dir string) error {
	if err := o.Meta.Validate(); err != nil {
		return err
	}
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	args := append([]string{"build"}, GoBuildFlags(o.Meta.Version)...)
	args = append(args, "-o", dir+string(filepath.Separator))
	for _, t := range targets {
		args = append(args, t.Package)
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = o.Root
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return err
	}
	// GOWORK: the repository's workspace, whatever the caller's environment says.
	cmd.Env = append(append(os.Environ(), GoEnv...), "GOOS=linux", "GOARCH="+o.GOARCH, "GOWORK="+filepath.Join(root, "go.work"))
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Stdout = o.stderr()
	cmd.Stderr = o.stderr()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (o Options) stderr() io.Writer {
	if o.Stderr != nil {
		return o.Stderr
	}
	return os.Stderr
}

// BaseLayer is the layer every image shares: the CA bundle read from caFile and rootfs/.
func BaseLayer(caFile string) (v1.Layer, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	files := map[string]tarFile{CAFile: {data: ca, mode: 0o644}}
	err = fs.WalkDir(Rootfs, "rootfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := Rootfs.ReadFile(p)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, "rootfs")] = tarFile{data: b, mode: 0o644}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return layer(files)
}

// BinaryLayer holds the binary at BinDir/name.
func BinaryLayer(name string, bin []byte) (v1.Layer, error) {
	return layer(map[string]tarFile{path.Join(BinDir, name): {data: bin, mode: 0o755}})
}

type tarFile struct {
	data []byte
	mode int64
}

// epoch is every tar entry's modification time.
var epoch = time.Unix(0, 0).UTC()

// layer is a gzip-compressed OCI layer of files (absolute paths) and their parent directories,
// sorted, owned by 0:0, with mtime 0: the same files give the same bytes.
func layer(files map[string]tarFile) (v1.Layer, error) {
	entries := map[string]*tar.Header{}
	data := map[string][]byte{}
	for p, f := range files {
		rel := strings.TrimPrefix(path.Clean(p), "/")
		data[rel] = f.data
		entries[rel] = &tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.mode, Size: int64(len(f.data))}
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			entries[d] = &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := entries[n]
		h.ModTime, h.Format = epoch, tar.FormatUSTAR
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data[n]); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithCompressedCaching)
}

// Image assembles target t from the shared base layer and its binary.
func Image(t Target, m Meta, goarch string, base v1.Layer, bin []byte) (v1.Image, error) {
	binLayer, err := BinaryLayer(t.Name, bin)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: m.Created.UTC()}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: created,
			CreatedBy: "wakepush deploy/images: CA bundle " + CAFile + ", /etc/passwd, /etc/group"}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{Created: created,
			CreatedBy: "wakepush deploy/images: go build " + strings.Join(GoBuildFlags(m.Version), " ") + " " + t.Package}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch
	cf.Created = created
	cf.Config = v1.Config{
		Entrypoint: []string{path.Join(BinDir, t.Name)},
		User:       User,
		Env:        append([]string(nil), Env...),
		WorkingDir: "/",
		Labels:     Labels(t, m),
	}
	return mutate.ConfigFile(img, cf)
}

// Build compiles the targets into a temporary directory and assembles their images.
func Build(ctx context.Context, o Options, targets []Target) ([]Built, error) {
	if o.GOARCH == "" {
		return nil, fmt.Errorf("GOARCH is required")
	}
	ca := o.CAFile
	if ca == "" {
		ca = CAFile
	}
	base, err := BaseLayer(ca)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wakepush-images-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := BuildBinaries(ctx, o, targets, dir); err != nil {
		return nil, err
	}
	var out []Built
	for _, t := range targets {
		bin, err := os.ReadFile(filepath.Join(dir, t.Name))
		if err != nil {
			return nil, err
		}
		img, err := Image(t, o.Meta, o.GOARCH, base, bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		out = append(out, Built{Target: t, Ref: Ref(t.Name, o.Meta.Version), Image: img})
	}
	return out, nil
}

// WriteLayout replaces dir with an OCI image layout holding b's image, tagged (annotation
// org.opencontainers.image.ref.name) with the version; io.containerd.image.name carries the full
// reference.
func WriteLayout(dir string, b Built) error {
	ref, err := name.NewTag(b.Ref, name.StrictValidation)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	err = p.AppendImage(b.Image, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
		"io.containerd.image.name":          ref.Name(),
	}))
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// WriteTarball writes b as a `docker load` / `podman load` archive.
func WriteTarball(file string, b Built) error {
	ref, err := name.NewTag(b.Ref, name.StrictValidation)
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, b.Image); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// Size is the bytes a pull transfers: manifest, config and compressed layers.
func Size(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// GitMeta reads the version, revision and commit time of the checkout at root: the version is
// `git describe --tags --always --abbrev=12`, with "-dirty" when tracked files differ from HEAD;
// SOURCE_DATE_EPOCH, when set, replaces the commit time.
func GitMeta(ctx context.Context, root string) (Meta, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"--no-optional-locks", "-C", root}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = strings.TrimSpace(string(ee.Stderr))
			}
			return "", fmt.Errorf("git %s: %v %s", strings.Join(args, " "), err, stderr)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var m Meta
	var err error
	if m.Revision, err = git("rev-parse", "HEAD"); err != nil {
		return m, err
	}
	if m.Version, err = git("describe", "--tags", "--always", "--abbrev=12", "HEAD"); err != nil {
		return m, err
	}
	status, err := git("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return m, err
	}
	if status != "" {
		m.Version += "-dirty"
	}
	sec := os.Getenv("SOURCE_DATE_EPOCH")
	if sec == "" {
		if sec, err = git("show", "-s", "--format=%ct", "HEAD"); err != nil {
			return m, err
		}
	}
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return m, fmt.Errorf("commit time %q: %w", sec, err)
	}
	m.Created = time.Unix(n, 0).UTC()
	return m, m.Validate()
}
