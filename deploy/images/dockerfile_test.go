package images

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// A careful, small Dockerfile reader: enough of the Dockerfile syntax to compare this Dockerfile
// with the Go builder (line continuations, comments, instructions with --flags, JSON arrays,
// key=value lists with double quotes, ${ARG} substitution). The BuildKit parser
// (github.com/moby/buildkit/frontend/dockerfile/parser) would pull BuildKit's whole requirement
// list into the workspace's module graph, and with it newer versions of the services'
// dependencies; this file is small enough for a reader this size.

type instruction struct {
	line  int
	cmd   string            // upper case
	flags map[string]string // --from=build → from: build (--mount may repeat: joined with " ")
	args  string            // the rest, continuation lines joined with a space
}

type stage struct {
	name, from string
	ins        []instruction
}

type dockerfile struct {
	globalArgs []instruction // ARGs before the first FROM
	stages     []stage
}

func parseDockerfile(text string) (*dockerfile, error) {
	var (
		df      dockerfile
		cur     strings.Builder
		curLine int
	)
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		cmd, rest, _ := strings.Cut(s, " ")
		in := instruction{line: curLine, cmd: strings.ToUpper(cmd), flags: map[string]string{}}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			rest = strings.TrimSpace(rest)
			k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			if old, ok := in.flags[k]; ok {
				v = old + " " + v
			}
			in.flags[k] = v
		}
		in.args = rest
		switch {
		case in.cmd == "FROM":
			w := strings.Fields(rest)
			st := stage{from: w[0]}
			if len(w) == 3 && strings.EqualFold(w[1], "AS") {
				st.name = w[2]
			} else if len(w) != 1 {
				return fmt.Errorf("line %d: FROM %q", in.line, rest)
			}
			df.stages = append(df.stages, st)
		case len(df.stages) == 0:
			if in.cmd != "ARG" {
				return fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
			}
			df.globalArgs = append(df.globalArgs, in)
		default:
			st := &df.stages[len(df.stages)-1]
			st.ins = append(st.ins, in)
		}
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, also between continuation lines
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			curLine = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("the file ends inside a continued line")
	}
	return &df, sc.Err()
}

// words splits shell-like text at blanks, keeping double-quoted parts together (quotes removed).
func words(s string) ([]string, error) {
	var (
		out   []string
		cur   strings.Builder
		inQ   bool
		inTok bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			inQ, inTok = !inQ, true
		case (r == ' ' || r == '\t') && !inQ:
			if inTok {
				out = append(out, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			cur.WriteRune(r)
			inTok = true
		}
	}
	if inQ {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inTok {
		out = append(out, cur.String())
	}
	return out, nil
}

// keyValues parses ENV and LABEL arguments (k=v k2="v 2").
func keyValues(s string) (map[string]string, []string, error) {
	ws, err := words(s)
	if err != nil {
		return nil, nil, err
	}
	m := map[string]string{}
	var order []string
	for _, w := range ws {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%q is not key=value", w)
		}
		m[k] = v
		order = append(order, k+"="+v)
	}
	return m, order, nil
}

var argRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expand substitutes ${NAME} and $NAME from vars; an unknown name is an error.
func expand(s string, vars map[string]string) (string, error) {
	var err error
	out := argRef.ReplaceAllStringFunc(s, func(m string) string {
		n := strings.Trim(m, "${}")
		v, ok := vars[n]
		if !ok {
			err = fmt.Errorf("%s is not a declared ARG", m)
		}
		return v
	})
	return out, err
}

func (d *dockerfile) stage(name string) *stage {
	for i := range d.stages {
		if d.stages[i].name == name {
			return &d.stages[i]
		}
	}
	return nil
}

// TestDockerfile checks that deploy/images/Dockerfile builds what the Go builder builds: the same
// Go version, go build environment and flags, base contents (CA bundle and rootfs/), user,
// environment, working directory, entrypoint per service and labels, and nothing else in the
// final image's config.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dockerfileProblems(df) {
		t.Error("Dockerfile: " + p)
	}
}

// dockerfileProblems lists every way df differs from the Go builder.
func dockerfileProblems(df *dockerfile) (problems []string) {
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Global ARGs: SERVICE picks the final stage, GO_VERSION the build image.
	global := map[string]string{}
	for _, a := range df.globalArgs {
		k, v, _ := strings.Cut(a.args, "=")
		global[k] = v
	}
	goVersion, err := goWorkVersion()
	if err != nil {
		errorf("%v", err)
	}
	if global["GO_VERSION"] != goVersion {
		errorf("GO_VERSION %q, go.work says go %s", global["GO_VERSION"], goVersion)
	}
	if _, ok := global["SERVICE"]; !ok {
		errorf("no global ARG SERVICE")
	}
	if !isTarget(global["SERVICE"]) {
		errorf("SERVICE defaults to %q, not an image", global["SERVICE"])
	}

	// Stages: build, base, one per image, and the final one.
	var names []string
	for _, st := range df.stages {
		names = append(names, st.name)
	}
	want := []string{"build", "base"}
	for _, tg := range Targets {
		want = append(want, tg.Name)
	}
	want = append(want, "")
	if !reflect.DeepEqual(names, want) {
		errorf("stages %q, want %q", names, want)
		return problems
	}

	// build: golang on Debian bookworm, `go build` as the Go builder runs it.
	build := df.stage("build")
	if build.from != "golang:${GO_VERSION}-bookworm" {
		errorf("build stage FROM %s, want golang:${GO_VERSION}-bookworm (Debian's CA bundle)", build.from)
	}
	var runs []instruction
	buildArgs := map[string]bool{}
	for _, in := range build.ins {
		switch in.cmd {
		case "RUN":
			runs = append(runs, in)
		case "ARG":
			k, _, _ := strings.Cut(in.args, "=")
			buildArgs[k] = true
		}
	}
	if !buildArgs["SERVICE"] || !buildArgs["VERSION"] {
		errorf("the build stage must declare ARG SERVICE and ARG VERSION for its RUN (has %v)", buildArgs)
	}
	if len(runs) != 1 {
		errorf("build stage has %d RUN, want the one go build", len(runs))
		return problems
	}
	ws, err := words(runs[0].args)
	if err != nil {
		errorf("RUN: %v", err)
	}
	var env []string
	for len(ws) > 0 && strings.Contains(ws[0], "=") {
		env, ws = append(env, ws[0]), ws[1:]
	}
	wantEnv := append(append([]string(nil), GoEnv...), "GOOS=linux")
	sort.Strings(env)
	sort.Strings(wantEnv)
	if !reflect.DeepEqual(env, wantEnv) {
		errorf("go build environment %q, want %q", env, wantEnv)
	}
	wantCmd := append(append([]string{"go", "build"}, GoBuildFlags("${VERSION}")...), "-o", "/out/", "./services/${SERVICE}")
	if !reflect.DeepEqual(ws, wantCmd) {
		errorf("build command\n%q\nwant\n%q", ws, wantCmd)
	}
	for _, tg := range Targets {
		if tg.Package != "./services/"+tg.Name {
			errorf("cannot build %s: its package %s is not ./services/%s", tg.Name, tg.Package, tg.Name)
		}
	}

	// base: scratch, the CA bundle from the build image, rootfs/, the user and environment.
	base := df.stage("base")
	if base.from != "scratch" {
		errorf("base FROM %s, want scratch", base.from)
	}
	var copies []string
	for _, in := range base.ins {
		switch in.cmd {
		case "COPY":
			copies = append(copies, fmt.Sprintf("from=%s %s", in.flags["from"], in.args))
		case "ENV":
			_, order, err := keyValues(in.args)
			if err != nil {
				errorf("line %d: %v", in.line, err)
			}
			if !reflect.DeepEqual(order, Env) {
				errorf("ENV %q, want %q", order, Env)
			}
		case "USER":
			if in.args != User {
				errorf("USER %s, want %s", in.args, User)
			}
		case "WORKDIR":
			if in.args != "/" {
				errorf("WORKDIR %s, want /", in.args)
			}
		default:
			errorf("line %d: unexpected %s in the base stage", in.line, in.cmd)
		}
	}
	wantCopies := []string{"from=build " + CAFile + " " + CAFile, "from= deploy/images/rootfs/ /"}
	if !reflect.DeepEqual(copies, wantCopies) {
		errorf("base COPY %q, want %q", copies, wantCopies)
	}
	if err := sameRootfs("rootfs"); err != nil {
		errorf("%v", err)
	}

	// One stage per image: the binary at BinDir/name, the entrypoint, the description.
	for _, tg := range Targets {
		st := df.stage(tg.Name)
		if st.from != "base" {
			errorf("stage %s FROM %s, want base", tg.Name, st.from)
		}
		var got []string
		for _, in := range st.ins {
			switch in.cmd {
			case "COPY":
				got = append(got, "COPY from="+in.flags["from"]+" "+in.args)
			case "ENTRYPOINT":
				var ep []string
				if err := json.Unmarshal([]byte(in.args), &ep); err != nil {
					errorf("line %d: ENTRYPOINT is not a JSON array: %v", in.line, err)
				}
				got = append(got, "ENTRYPOINT "+strings.Join(ep, " "))
			case "LABEL":
				m, _, err := keyValues(in.args)
				if err != nil {
					errorf("line %d: %v", in.line, err)
				}
				for k, v := range m {
					got = append(got, "LABEL "+k+"="+v)
				}
			default:
				errorf("line %d: unexpected %s in stage %s", in.line, in.cmd, tg.Name)
			}
		}
		bin := path.Join(BinDir, tg.Name)
		want := []string{"COPY from=build /out/" + tg.Name + " " + bin, "ENTRYPOINT " + bin,
			"LABEL org.opencontainers.image.description=" + tg.Description}
		if !reflect.DeepEqual(got, want) {
			errorf("stage %s:\n%q\nwant\n%q", tg.Name, got, want)
		}
	}

	// The final stage: FROM ${SERVICE} and the labels; with the build args of a build, every
	// image's labels equal the Go builder's.
	final := df.stages[len(df.stages)-1]
	if final.from != "${SERVICE}" {
		errorf("final stage FROM %s, want ${SERVICE}", final.from)
	}
	m := Meta{Version: "v1.2.3", Revision: strings.Repeat("a", 40), Created: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	for _, tg := range Targets {
		vars := map[string]string{"SERVICE": tg.Name, "VERSION": m.Version, "REVISION": m.Revision,
			"CREATED": m.Created.Format(time.RFC3339)}
		declared := map[string]bool{}
		labels := map[string]string{}
		for _, in := range df.stage(tg.Name).ins {
			if in.cmd == "LABEL" {
				kv, _, _ := keyValues(in.args)
				for k, v := range kv {
					labels[k] = v
				}
			}
		}
		for _, in := range final.ins {
			switch in.cmd {
			case "ARG":
				k, _, _ := strings.Cut(in.args, "=")
				declared[k] = true
			case "LABEL":
				kv, _, err := keyValues(in.args)
				if err != nil {
					errorf("line %d: %v", in.line, err)
				}
				for k, v := range kv {
					visible := map[string]string{}
					for n := range declared {
						visible[n] = vars[n]
					}
					if labels[k], err = expand(v, visible); err != nil {
						errorf("label %s: %v", k, err)
					}
				}
			default:
				errorf("line %d: unexpected %s in the final stage", in.line, in.cmd)
			}
		}
		if want := Labels(tg, m); !reflect.DeepEqual(labels, want) {
			errorf("%s labels\n%v\nwant\n%v", tg.Name, labels, want)
		}
	}
	return problems
}

func isTarget(name string) bool {
	for _, tg := range Targets {
		if tg.Name == name {
			return true
		}
	}
	return false
}

// goWorkVersion is the go directive of the workspace.
func goWorkVersion() (string, error) {
	b, err := os.ReadFile("../../go.work")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("go.work has no go directive")
}

// sameRootfs checks that the directory the Dockerfile copies holds exactly the files the Go
// builder embedded, with the same contents.
func sameRootfs(dir string) error {
	files := func(fsys fs.FS) (map[string]string, error) {
		m := map[string]string{}
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			m[p] = string(b)
			return err
		})
		return m, err
	}
	onDisk, err := files(os.DirFS(dir))
	if err != nil {
		return err
	}
	sub, err := fs.Sub(Rootfs, "rootfs")
	if err != nil {
		return err
	}
	embedded, err := files(sub)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(onDisk, embedded) {
		return fmt.Errorf("%s/ differs from what the Go builder embeds", dir)
	}
	return nil
}

// TestDockerfileChecksCatchDrift feeds the checks altered Dockerfiles: each must be reported.
func TestDockerfileChecksCatchDrift(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, old, new string }{
		{"user", "USER 65532:65532", "USER 0:0"},
		{"entrypoint", `ENTRYPOINT ["/usr/local/bin/sender"]`, `ENTRYPOINT ["/sender"]`},
		{"build flag", "-trimpath ", ""},
		{"tags", "-tags timetzdata", "-tags netgo"},
		{"cgo", "CGO_ENABLED=0", "CGO_ENABLED=1"},
		{"env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "SSL_CERT_DIR=/etc/ssl/certs"},
		{"label", `org.opencontainers.image.revision="${REVISION}"`, `org.opencontainers.image.revision="${VERSION}"`},
		{"extra instruction", "WORKDIR /\n", "WORKDIR /\nEXPOSE 8080\n"},
		{"base contents", "COPY deploy/images/rootfs/ /", "COPY deploy/images/rootfs/etc/passwd /etc/passwd"},
		{"go version", "ARG GO_VERSION=", "ARG GO_VERSION=1.25.0\nARG OLD_GO_VERSION="},
		{"version arg", "ARG VERSION=dev\nWORKDIR /src", "WORKDIR /src"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(raw), c.old) {
				t.Fatalf("the Dockerfile has no %q to alter", c.old)
			}
			df, err := parseDockerfile(strings.Replace(string(raw), c.old, c.new, 1))
			if err != nil {
				return // rejected by the parser: caught too
			}
			if ps := dockerfileProblems(df); len(ps) == 0 {
				t.Errorf("replacing %q with %q went unnoticed", c.old, c.new)
			} else {
				t.Logf("caught: %s", ps[0])
			}
		})
	}
}
