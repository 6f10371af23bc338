package images

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runner starts a container of an image layout: podman when it works here, else umoci + runc.
type runner interface {
	// run runs the image in layout dir (tag ref) with args after the entrypoint, or, when
	// entrypoint is set, that file bind-mounted read-only at /probe instead of the entrypoint.
	// It returns the process's output and exit status; err means it could not run.
	run(t *testing.T, dir, ref, entrypoint string, args ...string) (out string, exit int, err error)
}

// podman runs offline with its state in a temporary directory and the flags that work in this
// sandbox (ops-tooling.md §5): cgroupfs, file events, runc (crun fails on the hybrid cgroups),
// ulimits below the hard limits (setting them to the host's fails without CAP_SYS_RESOURCE).
type podman struct {
	dir    string
	images map[string]string // layout dir -> image ID
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	global := []string{"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"}
	return exec.Command("podman", append(global, args...)...)
}

func (p *podman) run(t *testing.T, dir, ref, entrypoint string, args ...string) (string, int, error) {
	id, ok := p.images[dir]
	if !ok {
		out, err := p.cmd("pull", "-q", "oci:"+dir+":"+ref).CombinedOutput()
		if err != nil {
			return "", 0, fmt.Errorf("podman pull oci:%s:%s: %v\n%s", dir, ref, err, out)
		}
		lines := strings.Fields(string(out))
		id = lines[len(lines)-1]
		p.images[dir] = id
	}
	a := []string{"run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	if entrypoint != "" {
		a = append(a, "-v", entrypoint+":/probe:ro", "--entrypoint", "/probe")
	}
	a = append(append(a, id), args...)
	var stdout, stderr bytes.Buffer
	c := p.cmd(a...)
	c.Stdout, c.Stderr = &stdout, &stderr
	return exitStatus(c.Run(), "podman "+strings.Join(a, " "), stdout.String()+stderr.String(), 125)
}

// exitStatus splits a command's outcome into the container process's exit status and a failure
// to run it: exit statuses from firstOwn up are the runtime's own (podman: 125-127).
func exitStatus(err error, what, out string, firstOwn int) (string, int, error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0, nil
	case errors.As(err, &ee) && ee.ExitCode() > 0 && ee.ExitCode() < firstOwn:
		return out, ee.ExitCode(), nil
	default:
		return out, -1, fmt.Errorf("%s: %v\n%s", what, err, out)
	}
}

// umociRunc unpacks the layout into an OCI runtime bundle (umoci derives config.json from the
// image config: user, environment, entrypoint) and runs it with runc.
type umociRunc struct {
	dir string
	n   int
}

func (u *umociRunc) run(t *testing.T, dir, ref, entrypoint string, args ...string) (string, int, error) {
	u.n++
	bundle := filepath.Join(u.dir, fmt.Sprintf("bundle%d", u.n))
	if out, err := exec.Command("umoci", "unpack", "--image", dir+":"+ref, bundle).CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("umoci unpack: %v\n%s", err, out)
	}
	defer os.RemoveAll(bundle)
	cfgPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", 0, err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return "", 0, err
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	argv, _ := proc["args"].([]any)
	if entrypoint != "" {
		argv = []any{"/probe"}
		mounts, _ := spec["mounts"].([]any)
		spec["mounts"] = append(mounts, map[string]any{"destination": "/probe", "type": "bind", "source": entrypoint,
			"options": []any{"bind", "ro"}})
	}
	for _, a := range args {
		argv = append(argv, a)
	}
	proc["args"] = argv
	proc["rlimits"] = []any{
		map[string]any{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
		map[string]any{"type": "RLIMIT_NPROC", "hard": 1024, "soft": 1024},
	}
	if raw, err = json.Marshal(spec); err != nil {
		return "", 0, err
	}
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return "", 0, err
	}
	var stdout, stderr bytes.Buffer
	c := exec.Command("runc", "--root", filepath.Join(u.dir, "runc"), "run", "--bundle", bundle, fmt.Sprintf("wakepush-imagetest-%d-%d", os.Getpid(), u.n))
	c.Stdout, c.Stderr = &stdout, &stderr
	// runc passes the container's exit status through; 255 is its own failure.
	return exitStatus(c.Run(), "runc run", stdout.String()+stderr.String(), 255)
}

// pickRunner returns podman when `podman info` works, else umoci + runc, else the reasons
// neither can run. WAKEPUSH_IMAGES_RUNNER=podman or umoci forces one.
func pickRunner(t *testing.T) (runner, string, []string) {
	force := os.Getenv("WAKEPUSH_IMAGES_RUNNER")
	var why []string
	if force == "" || force == "podman" {
		if err := lookAll("podman", "runc"); err != nil {
			why = append(why, "podman: "+err.Error())
		} else {
			// podman refuses a --runroot longer than 50 characters: keep it short.
			dir, err := os.MkdirTemp("/tmp", "wpi-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := os.RemoveAll(dir); err != nil {
					t.Logf("cleanup: %v", err)
				}
			})
			p := &podman{dir: dir, images: map[string]string{}}
			if out, err := p.cmd("info").CombinedOutput(); err != nil {
				why = append(why, fmt.Sprintf("podman info: %v: %s", err, lastLine(out)))
			} else {
				t.Cleanup(func() {
					if out, err := p.cmd("rmi", "--all", "--force").CombinedOutput(); err != nil {
						t.Logf("podman rmi: %v\n%s", err, out)
					}
				})
				return p, "podman", nil
			}
		}
	}
	if force == "" || force == "umoci" {
		if err := lookAll("umoci", "runc"); err != nil {
			why = append(why, "umoci+runc: "+err.Error())
		} else {
			return &umociRunc{dir: tempDir(t, "umoci")}, "umoci+runc", nil
		}
	}
	return nil, "", why
}

// tempDir is a directory removed after the test; unlike t.TempDir, a failure to remove what a
// container runtime left behind is logged, not a test failure.
func tempDir(t *testing.T, name string) string {
	d, err := os.MkdirTemp(tmpRoot, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return d
}

func lookAll(names ...string) error {
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not installed (apt-get install -y podman runc, or umoci runc)", strings.Join(missing, ", "))
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// probeReport is what internal/probe prints.
type probeReport struct {
	UID, GID, EUID, EGID int
	Groups               []int
	Home, Path           string
	SSLCertFile          string
	CACerts              int
	CAError              string
	WritableBinDir       bool
	WritableRoot         bool
}

// TestRun runs every image offline: its binary's help (its own usage text), then the probe in the
// image's place, which shows the process's user, environment and files.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs images")
	}
	r, name, why := pickRunner(t)
	if r == nil {
		t.Skipf("no container runtime can run the images here: %s", strings.Join(why, "; "))
	}
	t.Logf("runtime: %s %s", name, strings.Join(why, "; "))
	dir, _ := first(t)

	probe := filepath.Join(tempDir(t, "probe"), "probe")
	build := exec.Command("go", "build", "-trimpath", "-o", probe, "./internal/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Dir(probe), 0o755); err != nil {
		t.Fatal(err)
	}
	hostCA, err := os.ReadFile(CAFile)
	if err != nil {
		t.Fatal(err)
	}
	wantCerts := 0
	for rest := hostCA; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err == nil {
			wantCerts++
		}
	}
	if wantCerts == 0 {
		t.Fatalf("%s holds no certificates", CAFile)
	}

	for _, tg := range Targets {
		t.Run(tg.Name, func(t *testing.T) {
			layoutDir := filepath.Join(dir, tg.Name)
			args, want := []string{"-h"}, "Usage of "+tg.Name
			if tg.Name == "wakepushctl" {
				args, want = []string{"help"}, "usage: wakepushctl <command>"
			}
			start := time.Now()
			out, exit, err := r.run(t, layoutDir, testMeta.Version, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			// Every binary exits 0 after printing its usage.
			if exit != 0 || !strings.Contains(out, want) {
				t.Errorf("%s %s exited %d and printed no %q:\n%s", tg.Name, args[0], exit, want, out)
			}
			if tg.Name != "wakepushctl" && !strings.Contains(out, "WAKEPUSH_ADMIN_ADDR") {
				t.Errorf("%s -h lists no WAKEPUSH_ADMIN_ADDR:\n%s", tg.Name, out)
			}
			t.Logf("%s %s: exit %d, usage printed, in %s", tg.Name, args[0], exit, time.Since(start).Round(time.Millisecond))

			out, exit, err = r.run(t, layoutDir, testMeta.Version, probe)
			if err != nil || exit != 0 {
				t.Fatalf("probe: exit %d, %v\n%s", exit, err, out)
			}
			var rep probeReport
			if err := json.Unmarshal([]byte(lastLine([]byte(out))), &rep); err != nil {
				t.Fatalf("probe output %q: %v", out, err)
			}
			if rep.UID != 65532 || rep.GID != 65532 || rep.EUID != 65532 || rep.EGID != 65532 {
				t.Errorf("ran as uid %d gid %d (euid %d egid %d), want 65532", rep.UID, rep.GID, rep.EUID, rep.EGID)
			}
			for _, g := range rep.Groups {
				if g == 0 {
					t.Errorf("supplementary group root: %v", rep.Groups)
				}
			}
			if rep.Path != "/usr/local/bin" || rep.SSLCertFile != CAFile {
				t.Errorf("PATH %q, SSL_CERT_FILE %q", rep.Path, rep.SSLCertFile)
			}
			// The runtime takes HOME from the image's /etc/passwd entry for 65532.
			if rep.Home != "/nonexistent" {
				t.Errorf("HOME %q, want /nonexistent from the image's /etc/passwd", rep.Home)
			}
			if rep.CACerts != wantCerts || rep.CAError != "" {
				t.Errorf("the CA bundle in the image parses to %d certificates (%s), the host's has %d", rep.CACerts, rep.CAError, wantCerts)
			}
			if rep.WritableBinDir || rep.WritableRoot {
				t.Errorf("user 65532 can write to /usr/local/bin (%v) or / (%v)", rep.WritableBinDir, rep.WritableRoot)
			}
			t.Logf("probe: uid %d gid %d groups %v HOME %q, %d CA certificates", rep.UID, rep.GID, rep.Groups, rep.Home, rep.CACerts)
		})
	}
}
