package helm_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/helm/chartrender"
	"github.com/wakepush/wakepush/deploy/helm/kubeapi"
	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// TestInstall installs the chart with the Helm SDK into a real kube-apiserver v1.37.2 (with
// etcd; package kubeapi) for every values case, with the vendored CRDs loaded, so that the API
// server's validation and defaulting, strict field validation of server-side apply, and the
// CRDs' schemas and CEL rules accept every object. It then shows that the server rejects what
// the values schema cannot catch.
//
// There is no controller-manager: Deployments never get Pods and hook Jobs never run, so a
// Helm install that runs hooks would wait for the migration Job forever. The release is installed
// with DisableHooks, and every hook (the migration Job, the test Pod, …) is then created with
// Helm's own kube client (server-side apply, strict field validation) without waiting for it.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no API server")
	}
	srv := kubeapi.Start(t)
	ctx := t.Context()
	ch, crds := loadChart(t)

	// The CRDs, as a cluster with KEDA, the Prometheus Operator and Gateway API has them.
	ax, err := apiextclient.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds.CRDs {
		if _, err := ax.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd.DeepCopy(), metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
	}
	for _, crd := range crds.CRDs {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			c, err := ax.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range c.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not established: %v", crd.Name, err)
		}
	}

	for _, c := range valuesCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			ns := releaseName(c.Name)
			rel, err := install(t, srv, ch, c, ns, nil)
			if defaultsRequire(c, err) {
				t.Skipf("the defaults alone do not render, as intended: %v", err)
			}
			if err != nil {
				t.Fatalf("install: %v", err)
			}
			checkInstalled(t, srv, rel, ns)
			// A second revision with the same values: server-side apply of an unchanged release
			// (the upgrade path of every deploy) conflicts with nothing.
			up := action.NewUpgrade(helmConfig(t, srv, ns))
			up.Namespace = ns
			up.DisableHooks = true
			up.WaitStrategy = kube.HookOnlyStrategy
			up.Timeout = 2 * time.Minute
			r, err := up.RunWithContext(t.Context(), ns, ch, c.Vals)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if v := r.(*release.Release).Version; v != 2 {
				t.Errorf("upgrade: revision %d, want 2", v)
			}
		})
	}

	// Rejections: objects that pass `helm lint` and the values schema, made invalid after the
	// render. The API server refuses them, and the release fails.
	kc := kedaCase(t)
	for _, inj := range injections {
		t.Run("reject-"+inj.name, func(t *testing.T) {
			ns := "rej-" + inj.name
			_, err := install(t, srv, ch, kc, ns, funcPostRenderer(inj.inject(t)))
			if err == nil {
				t.Fatal("install succeeded")
			}
			if !strings.Contains(err.Error(), inj.server) {
				t.Fatalf("install error %q does not contain %q", err, inj.server)
			}
			t.Logf("rejected: %s", firstLine(err))
		})
	}
	for _, sv := range serverOnlyValues {
		t.Run("reject-values-"+sv.name, func(t *testing.T) {
			base := caseNamed(t, sv.base)
			vals := mergeValues(base.Vals, sv.override)
			// The schema and the templates accept these values …
			if _, err := chartrender.Render(ch, vals, renderOpts(sv.name)); err != nil {
				t.Fatalf("the render already rejects the values (move them to testdata/broken-*.yaml): %v", err)
			}
			// … the API server does not.
			_, err := install(t, srv, ch, valuesCase{Name: sv.name, Vals: vals}, "rej-"+sv.name, nil)
			if err == nil {
				t.Fatal("install succeeded")
			}
			if !strings.Contains(err.Error(), sv.server) {
				t.Fatalf("install error %q does not contain %q", err, sv.server)
			}
			t.Logf("rejected: %s", firstLine(err))
		})
	}
}

// firstLine is the first line of err, cut at 400 bytes: one rejected object is enough to show.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// serverOnlyValues are values the JSON schema accepts but the API server rejects.
var serverOnlyValues = []struct {
	name     string
	base     string // values case
	override map[string]any
	server   string
}{
	{
		// The schema allows any string as a label value; Kubernetes allows 63 characters of
		// [A-Za-z0-9_.-]. Nothing but the API server notices.
		name:     "label-value",
		base:     "minimal",
		override: map[string]any{"commonLabels": map[string]any{"team": "push team!"}},
		server:   `Invalid value: "push team!"`,
	},
}

// caseNamed returns the values case name, or the first ci values file when there is none.
func caseNamed(t *testing.T, name string) valuesCase {
	t.Helper()
	cases := valuesCases(t)
	for _, c := range cases {
		if c.Name == name {
			return c
		}
	}
	t.Logf("no values case %q, using %s", name, cases[1].Name)
	return cases[1]
}

// helmConfig is a Helm action configuration for namespace ns of srv, from a kubeconfig file
// (genericclioptions.ConfigFlags as the helm CLI builds it), storing releases in Secrets.
func helmConfig(t *testing.T, srv *kubeapi.Server, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &srv.Kubeconfig
	flags.Namespace = &ns
	cfg := action.NewConfiguration()
	cfg.SetLogger(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// install installs case c as release ns in namespace ns, then creates its hooks in order of
// weight (see TestInstall). pr, if set, post-renders the manifests.
func install(t *testing.T, srv *kubeapi.Server, ch *chart.Chart, c valuesCase, ns string, pr funcPostRenderer) (*release.Release, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := srv.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cfg := helmConfig(t, srv, ns)
	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace = ns, ns
	inst.ServerSideApply = true // the v4 default, stated
	inst.DisableHooks = true
	inst.WaitStrategy = kube.HookOnlyStrategy // no waiting for Pods that no controller creates
	inst.Timeout = 2 * time.Minute
	if pr != nil {
		inst.PostRenderer = pr
	}
	start := time.Now()
	r, err := inst.RunWithContext(ctx, ch, c.Vals)
	if err != nil {
		return nil, err
	}
	rel := r.(*release.Release)
	hooks := append([]*release.Hook(nil), rel.Hooks...)
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].Weight < hooks[j].Weight })
	for _, h := range hooks {
		res, err := cfg.KubeClient.Build(bytes.NewBufferString(h.Manifest), true)
		if err != nil {
			return rel, fmt.Errorf("hook %s %s (%s): build: %w", h.Kind, h.Name, h.Path, err)
		}
		if _, err := cfg.KubeClient.Create(res, kube.ClientCreateOptionServerSideApply(true, false)); err != nil {
			return rel, fmt.Errorf("hook %s %s (%s, %v): %w", h.Kind, h.Name, h.Path, h.Events, err)
		}
	}
	t.Logf("installed %s (%d hooks) in %s", rel.Name, len(hooks), time.Since(start).Round(time.Millisecond))
	return rel, nil
}

// checkInstalled checks the release is deployed and every rendered object (hooks included) is
// stored by the API server.
func checkInstalled(t *testing.T, srv *kubeapi.Server, rel *release.Release, ns string) {
	t.Helper()
	if rel.Info == nil || rel.Info.Status != "deployed" {
		t.Errorf("release status %v, want deployed", rel.Info)
	}
	cfg := helmConfig(t, srv, ns)
	manifests := []string{rel.Manifest}
	for _, h := range rel.Hooks {
		manifests = append(manifests, h.Manifest)
	}
	n := 0
	for _, m := range manifests {
		res, err := cfg.KubeClient.Build(bytes.NewBufferString(m), false)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range res {
			if err := info.Get(); err != nil {
				if apierrors.IsNotFound(err) {
					t.Errorf("%s %s: not stored", info.Mapping.GroupVersionKind.Kind, info.Name)
				} else {
					t.Errorf("%s %s: %v", info.Mapping.GroupVersionKind.Kind, info.Name, err)
				}
				continue
			}
			n++
		}
	}
	list := action.NewList(cfg)
	list.All = true
	rels, err := list.Run()
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 1 {
		t.Errorf("helm list: %d releases, want 1", len(rels))
	}
	t.Logf("%d objects stored", n)
}
