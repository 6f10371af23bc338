// Package images builds wakepush's OCI images without a Docker engine, from the Go toolchain and
// github.com/google/go-containerregistry: one image per service (ingest, coalescer, sender,
// recorder) and one for wakepushctl.
//
// Every image is two layers on an empty base:
//
//  1. the base: Debian's CA bundle (/etc/ssl/certs/ca-certificates.crt) and /etc/passwd and
//     /etc/group naming the non-root user 65532 (rootfs/ in this directory);
//  2. the static binary (CGO_ENABLED=0, -trimpath, -s -w, tzdata embedded with -tags timetzdata)
//     at /usr/local/bin/<name>, which is also the entrypoint.
//
// The config runs as 65532:65532 and carries the OCI labels (source, revision, version, title,
// description, created). Tar entries have mtime 0 and owner 0:0, and the image's creation time is
// the commit time, so the same commit, toolchain and CA bundle give the same manifest digest.
//
// The Dockerfile next to this file builds the same images with Docker; dockerfile_test.go keeps
// the two in step through the settings exported here.
package images

import (
	"embed"
	"fmt"
	"regexp"
	"time"
)

// Settings shared by the Go builder and the Dockerfile (dockerfile_test.go compares them).
const (
	// Registry is where the images are published: Registry + "/" + name + ":" + version.
	Registry = "ghcr.io/wakepush"
	// Source is the org.opencontainers.image.source label.
	Source = "https://github.com/wakepush/wakepush"
	// User is the numeric user and group every image runs as (distroless's "nonroot").
	User = "65532:65532"
	// BinDir holds each image's binary; the entrypoint is BinDir + "/" + name.
	BinDir = "/usr/local/bin"
	// CAFile is where the CA bundle is in the image and, by default, on the Debian build host.
	CAFile = "/etc/ssl/certs/ca-certificates.crt"
	// VersionVar is the variable -X sets to the version (services/internal/service.Version).
	VersionVar = "github.com/wakepush/wakepush/services/internal/service.Version"
	// BuildTags embeds the IANA time zone database (package time/tzdata) in every binary.
	BuildTags = "timetzdata"
)

// Env is every image's environment.
var Env = []string{
	"PATH=" + BinDir,
	"SSL_CERT_FILE=" + CAFile,
}

// GoEnv is the environment of `go build` on top of the caller's (GOOS and GOARCH are added per
// build). GOFLAGS is emptied so that a developer's setting cannot change the binaries.
var GoEnv = []string{"CGO_ENABLED=0", "GOFLAGS="}

// GoBuildFlags are the flags of `go build` for version v (before -o and the packages).
func GoBuildFlags(v string) []string {
	return []string{"-trimpath", "-buildvcs=false", "-tags", BuildTags, "-ldflags", LDFlags(v)}
}

// LDFlags strips the symbol table and DWARF and stamps the version.
func LDFlags(v string) string { return "-s -w -X " + VersionVar + "=" + v }

// Target is one image: a main package of the services module.
type Target struct {
	Name        string // binary and image name
	Package     string // main package, relative to the repository root
	Description string // org.opencontainers.image.description
}

// Targets are the images `make images` builds, in this order.
var Targets = []Target{
	{"ingest", "./services/ingest", "wakepush ingest: XEP-0114 component and HTTP API (registrations, publishes, receipts) into Kafka"},
	{"coalescer", "./services/coalescer", "wakepush coalescer: per-device coalescing of push events into wakes"},
	{"sender", "./services/sender", "wakepush sender: delivers wakes to APNs and FCM"},
	{"recorder", "./services/recorder", "wakepush recorder: projects every topic into ClickHouse"},
	{"wakepushctl", "./services/wakepushctl", "wakepush command line: queries, stats and the demo"},
}

// Ref is the image reference of target name at version v.
func Ref(name, v string) string { return Registry + "/" + name + ":" + v }

// Meta describes the commit an image is built from.
type Meta struct {
	Version  string    // image tag and org.opencontainers.image.version
	Revision string    // full commit hash
	Created  time.Time // commit time: the image's creation time and org.opencontainers.image.created
}

// tagRE is the OCI distribution spec's tag grammar.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Validate reports a version that cannot be a tag, an empty revision or a zero time.
func (m Meta) Validate() error {
	if !tagRE.MatchString(m.Version) {
		return fmt.Errorf("version %q is not a valid image tag", m.Version)
	}
	if m.Revision == "" {
		return fmt.Errorf("revision is empty")
	}
	if m.Created.IsZero() {
		return fmt.Errorf("created time is zero")
	}
	return nil
}

// Labels are the OCI annotations of target t's config.
func Labels(t Target, m Meta) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       t.Name,
		"org.opencontainers.image.description": t.Description,
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.revision":    m.Revision,
		"org.opencontainers.image.version":     m.Version,
		"org.opencontainers.image.created":     m.Created.UTC().Format(time.RFC3339),
	}
}

// Rootfs is the base layer's files besides the CA bundle: rootfs/etc/passwd and rootfs/etc/group.
//
//go:embed rootfs
var Rootfs embed.FS
