// Package kubeapi runs a real Kubernetes API server for tests: Debian's etcd (package etcd-server)
// and kube-apiserver v1.37.2 built from deploy/tools/kube-apiserver (`make kube-apiserver`, into
// the user cache), on free loopback ports, with their state in the test's temporary directory.
//
// There is no controller-manager, scheduler or kubelet: objects are validated, defaulted and
// stored, but Deployments never get Pods, Jobs never run and namespaces get no "default"
// ServiceAccount (EnsureServiceAccount creates one). See docs in ../README.md.
package kubeapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is the kube-apiserver version the Makefile builds (KUBE_VERSION).
const Version = "v1.37.2"

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	URL        string // https://127.0.0.1:PORT
	Token      string // bearer token of a system:masters user
	Kubeconfig string // path of a kubeconfig for URL and Token
	Config     *rest.Config
	Clientset  *kubernetes.Clientset
	Dir        string
}

// CacheDir is the wakepush user cache ($XDG_CACHE_HOME or ~/.cache, then wakepush), as the
// Makefile's WAKEPUSH_CACHE_DIR.
func CacheDir() string {
	if d := os.Getenv("WAKEPUSH_CACHE_DIR"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "wakepush")
}

// Binaries returns the kube-apiserver (env KUBE_APISERVER, else the cached build) and etcd (env
// ETCD, else etcd on PATH) paths, or an error naming what is missing and how to get it.
func Binaries() (apiserver, etcd string, err error) {
	apiserver = os.Getenv("KUBE_APISERVER")
	if apiserver == "" {
		apiserver = filepath.Join(CacheDir(), "bin", "kube-apiserver-"+Version)
	}
	var missing []string
	if _, err := os.Stat(apiserver); err != nil {
		missing = append(missing, fmt.Sprintf("kube-apiserver %s (%s; build it with `make kube-apiserver`)", Version, apiserver))
	}
	etcd = os.Getenv("ETCD")
	if etcd == "" {
		if p, err := exec.LookPath("etcd"); err == nil {
			etcd = p
		} else {
			missing = append(missing, "etcd (apt-get install --no-install-recommends etcd-server)")
		}
	} else if _, err := os.Stat(etcd); err != nil {
		missing = append(missing, fmt.Sprintf("etcd (%s)", etcd))
	}
	if len(missing) > 0 {
		return "", "", errors.New("missing " + strings.Join(missing, " and "))
	}
	return apiserver, etcd, nil
}

// Start starts etcd and kube-apiserver for t and stops them when t ends. When a binary is missing
// the test is skipped, or fails when CI=true (the CI machine must run these tests).
func Start(t testing.TB) *Server {
	t.Helper()
	apiserver, etcd, err := Binaries()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kubeapi: %v (CI=true: not skipping)", err)
		}
		t.Skipf("kubeapi: %v", err)
	}
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		s, err := start(t, filepath.Join(dir, strconv.Itoa(attempt)), apiserver, etcd)
		if err == nil {
			return s
		}
		lastErr = err
		t.Logf("kubeapi: attempt %d: %v", attempt+1, err)
	}
	t.Fatalf("kubeapi: %v", lastErr)
	return nil
}

func start(t testing.TB, dir, apiserverBin, etcdBin string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcdProc, err := startProc(t, dir, "etcd", etcdBin,
		"--name", "default",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--logger", "zap", "--log-level", "warn",
	)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(clientURL+"/health", "", 30*time.Second, etcdProc); err != nil {
		etcdProc.stop()
		return nil, fmt.Errorf("etcd: %w\n%s", err, etcdProc.tail())
	}

	// Service-account keys and a static token of a system:masters user.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,wakepush-test-admin,wakepush-test-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	kas, err := startProc(t, dir, "kube-apiserver", apiserverBin,
		"--etcd-servers", clientURL,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[2]),
		"--advertise-address", "127.0.0.1",
		// Required with a loopback advertise address ("cannot use public IP 127.0.0.1 with endpoint reconciler").
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
	)
	if err != nil {
		etcdProc.stop()
		return nil, err
	}
	stopAll := func() { kas.stop(); etcdProc.stop() }
	if err := waitHTTP(url+"/readyz", token, 90*time.Second, kas); err != nil {
		stopAll()
		return nil, fmt.Errorf("kube-apiserver: %w\n%s", err, kas.tail())
	}
	t.Cleanup(stopAll)

	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
`, url, token)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{URL: url, Token: token, Kubeconfig: kubeconfig, Config: cfg, Clientset: cs, Dir: dir}, nil
}

// EnsureNamespace creates namespace ns and its "default" ServiceAccount (which the missing
// controller-manager would create; Pods need it to pass the ServiceAccount admission plugin).
func (s *Server) EnsureNamespace(ctx context.Context, ns string) error {
	_, err := s.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return s.EnsureServiceAccount(ctx, ns, "default")
}

// EnsureServiceAccount creates ServiceAccount ns/name unless it exists.
func (s *Server) EnsureServiceAccount(ctx context.Context, ns, name string) error {
	_, err := s.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t testing.TB, dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = dir
	// Own process group, and SIGKILL if the test binary dies first (Linux).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Logf("kubeapi: %s started (pid %d, log %s)", name, cmd.Process.Pid, logPath)
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of the process log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return p.name + " log (" + p.log + "):\n" + string(bytes.Join(lines, []byte("\n")))
}

func waitHTTP(url, token string, timeout time.Duration, p *proc) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s (last: %s)", url, timeout, last)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
