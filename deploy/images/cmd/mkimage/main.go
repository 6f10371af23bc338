// Command mkimage builds wakepush's OCI images without a Docker engine (`make images`): one OCI
// image layout per service under -out/<name>/ and, with -tar, a `docker load` archive
// -out/<name>.tar. It prints each image's reference, manifest digest and size.
//
//	go run ./deploy/images/cmd/mkimage [-out .data/images] [-tar] [-only ingest,sender]
//	    [-version V -revision R -created RFC3339|unix] [-arch amd64] [-ca-file F]
//
// The version, revision and creation time default to the checkout's (package images, GitMeta):
// the same commit gives the same digests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wakepush/wakepush/deploy/images"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var (
		out      = flag.String("out", ".data/images", "output directory: <out>/<name>/ (OCI layout), <out>/<name>.tar with -tar")
		tarOut   = flag.Bool("tar", false, "also write <out>/<name>.tar for docker load / podman load / kind load image-archive")
		only     = flag.String("only", "", "comma-separated image names (default: all)")
		root     = flag.String("root", ".", "repository root (holds go.work)")
		goCmd    = flag.String("go", "go", "go command")
		arch     = flag.String("arch", runtime.GOARCH, "GOARCH of the images (GOOS is linux)")
		caFile   = flag.String("ca-file", images.CAFile, "CA bundle to copy into the images (Debian's ca-certificates)")
		version  = flag.String("version", "", "image tag and version label (default: git describe --tags --always, -dirty)")
		revision = flag.String("revision", "", "revision label (default: git rev-parse HEAD)")
		created  = flag.String("created", "", "creation time, RFC 3339 or Unix seconds (default: SOURCE_DATE_EPOCH or the commit time)")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	targets, err := selectTargets(*only)
	if err != nil {
		return err
	}
	var meta images.Meta
	if *version == "" || *revision == "" || *created == "" {
		if meta, err = images.GitMeta(ctx, *root); err != nil {
			return fmt.Errorf("%w (outside a git checkout pass -version, -revision and -created)", err)
		}
	}
	if *version != "" {
		meta.Version = *version
	}
	if *revision != "" {
		meta.Revision = *revision
	}
	if *created != "" {
		if meta.Created, err = parseTime(*created); err != nil {
			return err
		}
	}
	start := time.Now()
	built, err := images.Build(ctx, images.Options{Root: *root, Go: *goCmd, GOARCH: *arch, CAFile: *caFile, Meta: meta}, targets)
	if err != nil {
		return err
	}
	fmt.Printf("%-12s %-50s %-71s %s\n", "image", "reference", "digest", "size")
	for _, b := range built {
		dir := filepath.Join(*out, b.Target.Name)
		if err := images.WriteLayout(dir, b); err != nil {
			return fmt.Errorf("%s: %w", b.Target.Name, err)
		}
		if *tarOut {
			if err := images.WriteTarball(dir+".tar", b); err != nil {
				return fmt.Errorf("%s: %w", b.Target.Name, err)
			}
		}
		d, err := b.Image.Digest()
		if err != nil {
			return err
		}
		size, err := images.Size(b.Image)
		if err != nil {
			return err
		}
		fmt.Printf("%-12s %-50s %-71s %.1f MB (%d bytes)\n", b.Target.Name, b.Ref, d, float64(size)/1e6, size)
	}
	fmt.Printf("mkimage: %d images of %s (revision %s, created %s) in %s in %.1fs\n", len(built), meta.Version,
		meta.Revision, meta.Created.Format(time.RFC3339), *out, time.Since(start).Seconds())
	return nil
}

func selectTargets(only string) ([]images.Target, error) {
	if only == "" {
		return images.Targets, nil
	}
	var out []images.Target
	for _, n := range strings.Split(only, ",") {
		found := false
		for _, t := range images.Targets {
			if t.Name == strings.TrimSpace(n) {
				out, found = append(out, t), true
			}
		}
		if !found {
			return nil, fmt.Errorf("no image %q", n)
		}
	}
	return out, nil
}

func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("-created %q: RFC 3339 or Unix seconds", s)
	}
	return t.UTC(), nil
}
