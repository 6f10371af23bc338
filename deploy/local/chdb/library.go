// Package chdb obtains ClickHouse for the local dev stack and tests, as
// libchdb (ClickHouse built as a shared library, shipped in the npm package
// @chdb/lib-linux-x64-gnu), and runs it as a server through the chdb-server
// launcher (cmd/chdb-server).
//
// EnsureLibrary downloads the pinned release once with the ordinary npm
// client, checks it against the pinned npm integrity (sha512) and caches the
// extracted libchdb.so (about 566 MB) under the user's cache directory.
package chdb

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// The pinned libchdb release.
const (
	// NPMPackage is the npm package shipping libchdb.so for linux/amd64 glibc.
	NPMPackage = "@chdb/lib-linux-x64-gnu"
	// Version is the pinned package version.
	Version = "26.7.3-stable.1"
	// Integrity is the npm integrity (SRI, sha512) of the package tarball.
	Integrity = "sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw=="

	libraryMember = "package/libchdb.so"
	libraryName   = "libchdb.so"
	markerName    = ".verified"
)

// CacheDir returns the wakepush cache directory: $WAKEPUSH_CACHE_DIR if set,
// else os.UserCacheDir()/wakepush.
func CacheDir() (string, error) {
	if d := os.Getenv("WAKEPUSH_CACHE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("chdb: no cache directory (set WAKEPUSH_CACHE_DIR): %w", err)
	}
	return filepath.Join(d, "wakepush"), nil
}

// EnsureLibrary returns the path of the pinned, verified libchdb.so,
// <cache>/chdb/<Version>/libchdb.so, downloading it first if needed with
// `npm pack`. Concurrent callers, in this or other processes, wait for a
// single download (an exclusive lock on <cache>/chdb/.lock).
func EnsureLibrary(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return ensureLibrary(ctx, filepath.Join(cache, "chdb"), release{NPMPackage, Version, Integrity}, "npm")
}

type release struct {
	pkg, version, integrity string
}

// ensureLibrary does EnsureLibrary's work in dir with the given npm command.
func ensureLibrary(ctx context.Context, dir string, r release, npm string) (string, error) {
	libDir := filepath.Join(dir, r.version)
	lib := filepath.Join(libDir, libraryName)
	if verified(libDir, r.integrity) {
		return lib, nil
	}
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		return "", fmt.Errorf("chdb: create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if verified(libDir, r.integrity) { // another process got it meanwhile
		return lib, nil
	}
	// Holding the lock, anything temporary is a leftover of a killed run.
	for _, pattern := range []string{filepath.Join(dir, "download-*"), filepath.Join(libDir, libraryName+".tmp-*")} {
		stale, _ := filepath.Glob(pattern)
		for _, f := range stale {
			_ = os.RemoveAll(f)
		}
	}

	tmp, err := os.MkdirTemp(dir, "download-")
	if err != nil {
		return "", fmt.Errorf("chdb: create download dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	tgz, err := npmPack(ctx, npm, r.pkg+"@"+r.version, tmp)
	if err != nil {
		return "", err
	}
	if err := verifyIntegrity(tgz, r.integrity); err != nil {
		return "", fmt.Errorf("chdb: %s@%s: %w", r.pkg, r.version, err)
	}
	size, err := extractMember(tgz, libraryMember, lib)
	if err != nil {
		return "", fmt.Errorf("chdb: %s@%s: %w", r.pkg, r.version, err)
	}
	if err := os.Remove(tgz); err != nil {
		return "", fmt.Errorf("chdb: remove tarball: %w", err)
	}
	marker := fmt.Sprintf("%s\n%d\n", r.integrity, size)
	if err := writeFileAtomic(filepath.Join(libDir, markerName), []byte(marker), 0o644); err != nil {
		return "", fmt.Errorf("chdb: write marker: %w", err)
	}
	return lib, nil
}

// verified reports whether libDir holds a library extracted from a tarball
// with the given integrity: the marker names it and the size still matches.
func verified(libDir, integrity string) bool {
	b, err := os.ReadFile(filepath.Join(libDir, markerName))
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != integrity {
		return false
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(libDir, libraryName))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// lockFile takes an exclusive lock on path (flock), waiting until ctx ends. The returned func
// releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	fl := flock.New(path)
	if _, err := fl.TryLockContext(ctx, 200*time.Millisecond); err != nil {
		return nil, fmt.Errorf("chdb: waiting for lock %s (another process is downloading libchdb): %w", path, err)
	}
	return func() { _ = fl.Unlock() }, nil
}

// npmPack runs `npm pack spec --pack-destination dir` and returns the
// tarball it wrote.
func npmPack(ctx context.Context, npm, spec, dir string) (string, error) {
	bin, err := exec.LookPath(npm)
	if err != nil {
		return "", fmt.Errorf("chdb: npm is needed to download %s (install Node.js and npm, e.g. apt-get install npm): %w", spec, err)
	}
	cmd := exec.CommandContext(ctx, bin, "pack", spec, "--pack-destination", dir)
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chdb: npm pack %s: %w\n%s", spec, err, strings.TrimSpace(out.String()))
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.tgz"))
	if err != nil {
		return "", fmt.Errorf("chdb: npm pack %s: %w", spec, err)
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("chdb: npm pack %s: expected one tarball in %s, found %d\n%s", spec, dir, len(matches), strings.TrimSpace(out.String()))
	}
	return matches[0], nil
}

// verifyIntegrity checks file against an npm integrity string
// ("sha512-<base64 digest>").
func verifyIntegrity(file, integrity string) error {
	want, ok := strings.CutPrefix(integrity, "sha512-")
	if !ok {
		return fmt.Errorf("unsupported integrity %q: want sha512-<base64>", integrity)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("verify integrity: %w", err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verify integrity: read %s: %w", file, err)
	}
	got := base64.StdEncoding.EncodeToString(h.Sum(nil))
	if got != want {
		return fmt.Errorf("integrity mismatch for %s: got sha512-%s, want %s", filepath.Base(file), got, integrity)
	}
	return nil
}

// extractMember copies the regular file named member from the gzipped tar
// tgz to dst (atomically, mode 0755) and returns its size.
func extractMember(tgz, member, dst string) (int64, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return 0, fmt.Errorf("extract: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("extract %s: %w", filepath.Base(tgz), err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return 0, fmt.Errorf("extract %s: no %s in the tarball", filepath.Base(tgz), member)
		}
		if err != nil {
			return 0, fmt.Errorf("extract %s: %w", filepath.Base(tgz), err)
		}
		if hdr.Name != member {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return 0, fmt.Errorf("extract %s: %s is not a regular file", filepath.Base(tgz), member)
		}
		if err := copyAtomic(dst, tr, hdr.Size, 0o755); err != nil {
			return 0, fmt.Errorf("extract %s: %w", member, err)
		}
		return hdr.Size, nil
	}
}

// copyAtomic writes exactly size bytes from r to dst through a temporary file
// in dst's directory and a rename.
func copyAtomic(dst string, r io.Reader, size int64, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	n, err := io.Copy(tmp, r)
	if err == nil && n != size {
		err = fmt.Errorf("short copy: %d of %d bytes", n, size)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	return err
}

func writeFileAtomic(dst string, b []byte, mode os.FileMode) error {
	return copyAtomic(dst, strings.NewReader(string(b)), int64(len(b)), mode)
}
