package chdb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTarball writes a gzipped tar with the given regular files and returns
// its path and npm integrity.
func fakeTarball(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pkg-1.0.0.tgz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, integrityOf(buf.Bytes())
}

func integrityOf(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestVerifyIntegrity(t *testing.T) {
	t.Parallel()
	tgz, integrity := fakeTarball(t, map[string]string{libraryMember: "ELF..."})
	orig, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(orig)
	tampered[len(tampered)/2] ^= 0x01
	tamperedPath := filepath.Join(t.TempDir(), "tampered.tgz")
	if err := os.WriteFile(tamperedPath, tampered, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		file      string
		integrity string
		wantErr   string
	}{
		{name: "match", file: tgz, integrity: integrity},
		{name: "tampered tarball", file: tamperedPath, integrity: integrity, wantErr: "integrity mismatch"},
		{name: "other package's integrity", file: tgz, integrity: Integrity, wantErr: "integrity mismatch"},
		{name: "sha1 is not accepted", file: tgz, integrity: "sha1-AAAA", wantErr: "unsupported integrity"},
		{name: "missing file", file: filepath.Join(t.TempDir(), "nope.tgz"), integrity: integrity, wantErr: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := verifyIntegrity(tc.file, tc.integrity)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("verifyIntegrity: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("verifyIntegrity = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestExtractMember(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{name: "found", files: map[string]string{"package/package.json": "{}", libraryMember: "library bytes"}},
		{name: "missing", files: map[string]string{"package/package.json": "{}"}, wantErr: "no package/libchdb.so"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tgz, _ := fakeTarball(t, tc.files)
			dst := filepath.Join(t.TempDir(), "libchdb.so")
			n, err := extractMember(tgz, libraryMember, dst)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("extractMember = %v, want error containing %q", err, tc.wantErr)
				}
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Fatalf("destination exists after a failed extraction: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.files[libraryMember] || n != int64(len(got)) {
				t.Fatalf("extracted %q (%d bytes), want %q", got, n, tc.files[libraryMember])
			}
		})
	}
}

// fakeNPM writes an executable that behaves like `npm pack SPEC
// --pack-destination DIR` by copying tgz into DIR, and counts its calls in a
// file next to it.
func fakeNPM(t *testing.T, tgz string) (npm, calls string) {
	t.Helper()
	dir := t.TempDir()
	npm = filepath.Join(dir, "npm")
	calls = filepath.Join(dir, "calls")
	script := `#!/bin/sh
set -e
echo "$@" >> '` + calls + `'
[ "$1" = pack ] && [ "$3" = --pack-destination ] || { echo "unexpected args: $*" >&2; exit 2; }
cp '` + tgz + `' "$4/"
basename '` + tgz + `'
`
	if err := os.WriteFile(npm, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return npm, calls
}

func TestEnsureLibraryFlow(t *testing.T) {
	t.Parallel()
	const body = "not really a shared library"
	tgz, integrity := fakeTarball(t, map[string]string{"package/README.md": "hi", libraryMember: body})

	tests := []struct {
		name      string
		integrity string
		npm       func(t *testing.T) string
		wantErr   string
	}{
		{name: "downloads and verifies", integrity: integrity},
		{name: "integrity mismatch", integrity: Integrity, wantErr: "integrity mismatch"},
		{name: "npm missing", integrity: integrity, wantErr: "npm is needed",
			npm: func(t *testing.T) string { return filepath.Join(t.TempDir(), "no-npm-here") }},
		{name: "npm fails", integrity: integrity, wantErr: "npm pack pkg@1.0.0",
			npm: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "npm")
				if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'npm error 404 Not Found' >&2\nexit 1\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				return p
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cache := t.TempDir()
			npm, calls := fakeNPM(t, tgz)
			if tc.npm != nil {
				npm = tc.npm(t)
			}
			r := release{pkg: "pkg", version: "1.0.0", integrity: tc.integrity}
			lib, err := ensureLibrary(context.Background(), cache, r, npm)
			wantLib := filepath.Join(cache, "1.0.0", "libchdb.so")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ensureLibrary = %v, want error containing %q", err, tc.wantErr)
				}
				if _, err := os.Stat(wantLib); !os.IsNotExist(err) {
					t.Fatalf("library exists after a failure: %v", err)
				}
				assertNoLeftovers(t, cache)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if lib != wantLib {
				t.Fatalf("path %s, want %s", lib, wantLib)
			}
			if got, _ := os.ReadFile(lib); string(got) != body {
				t.Fatalf("library content %q, want %q", got, body)
			}
			assertNoLeftovers(t, cache)

			// Cached: no second npm call.
			if _, err := ensureLibrary(context.Background(), cache, r, npm); err != nil {
				t.Fatal(err)
			}
			if n := countLines(t, calls); n != 1 {
				t.Fatalf("npm called %d times, want 1", n)
			}

			// A truncated library no longer matches its marker: fetched again.
			if err := os.WriteFile(lib, []byte("trunc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := ensureLibrary(context.Background(), cache, r, npm); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(lib); string(got) != body {
				t.Fatalf("library content after repair %q, want %q", got, body)
			}
			if n := countLines(t, calls); n != 2 {
				t.Fatalf("npm called %d times, want 2", n)
			}
		})
	}
}

// TestEnsureLibraryConcurrent: parallel callers download once.
func TestEnsureLibraryConcurrent(t *testing.T) {
	t.Parallel()
	tgz, integrity := fakeTarball(t, map[string]string{libraryMember: "lib"})
	npm, calls := fakeNPM(t, tgz)
	cache := t.TempDir()
	r := release{pkg: "pkg", version: "1.0.0", integrity: integrity}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := ensureLibrary(context.Background(), cache, r, npm)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := countLines(t, calls); n != 1 {
		t.Fatalf("npm called %d times, want 1", n)
	}
}

func TestLockFileCancel(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".lock")
	unlock, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lockFile(ctx, path); err == nil || !strings.Contains(err.Error(), "another process is downloading") {
		t.Fatalf("lockFile on a held lock with a cancelled context = %v", err)
	}
}

func assertNoLeftovers(t *testing.T, cache string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(cache, "download-*"))
	tmps, _ := filepath.Glob(filepath.Join(cache, "*", "*.tmp-*"))
	if len(matches)+len(tmps) > 0 {
		t.Fatalf("leftover temporary files: %v %v", matches, tmps)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
