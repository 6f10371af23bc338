package helm_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/deploy/helm/chartrender"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// recorder collects the errors of the invariant checks.
type recorder struct{ errs []string }

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestInvariantsCatch shows that each invariant check of TestRender fires: the richest values
// case is rendered, one thing is broken in the decoded objects, and the checks must report it.
func TestInvariantsCatch(t *testing.T) {
	c := richestCase(t)
	firstDeployment := func(objs []chartrender.Object) *appsv1.Deployment {
		for _, o := range objs {
			if d, ok := o.Typed.(*appsv1.Deployment); ok {
				return d
			}
		}
		t.Fatal("no Deployment")
		return nil
	}
	ctr := func(objs []chartrender.Object) *corev1.Container {
		return &firstDeployment(objs).Spec.Template.Spec.Containers[0]
	}
	falseP, trueP := false, true
	mutations := []struct {
		name   string
		mutate func([]chartrender.Object) []chartrender.Object
		want   string
	}{
		{"no-startup-probe", func(o []chartrender.Object) []chartrender.Object { ctr(o).StartupProbe = nil; return o }, "want all three"},
		{"no-memory-limit", func(o []chartrender.Object) []chartrender.Object {
			delete(ctr(o).Resources.Limits, corev1.ResourceMemory)
			return o
		}, "limits.memory required"},
		{"writable-root", func(o []chartrender.Object) []chartrender.Object {
			ctr(o).SecurityContext.ReadOnlyRootFilesystem = &falseP
			return o
		}, "readOnlyRootFilesystem is not true"},
		{"privilege-escalation", func(o []chartrender.Object) []chartrender.Object {
			ctr(o).SecurityContext.AllowPrivilegeEscalation = &trueP
			return o
		}, "allowPrivilegeEscalation is not false"},
		{"caps-kept", func(o []chartrender.Object) []chartrender.Object { ctr(o).SecurityContext.Capabilities = nil; return o }, "drop ALL"},
		{"literal-password", func(o []chartrender.Object) []chartrender.Object {
			ctr(o).Env = append(ctr(o).Env, corev1.EnvVar{Name: "WAKEPUSH_KAFKA_SASL_PASSWORD", Value: "hunter2"})
			return o
		}, "has a literal value"},
		{"dsn-in-env", func(o []chartrender.Object) []chartrender.Object {
			ctr(o).Env = append(ctr(o).Env, corev1.EnvVar{Name: "WAKEPUSH_X", Value: "clickhouse://u:p@ch:9440/db"})
			return o
		}, "looks like a credential"},
		{"foreign-image", func(o []chartrender.Object) []chartrender.Object {
			ctr(o).Image = "docker.io/library/nginx:1.29"
			return o
		}, "is not one of"},
		{"pprof-port", func(o []chartrender.Object) []chartrender.Object {
			ctr(o).Ports = append(ctr(o).Ports, corev1.ContainerPort{Name: "pprof", ContainerPort: 6060})
			return o
		}, "exposes pprof"},
		{"short-grace", func(o []chartrender.Object) []chartrender.Object {
			g := int64(5)
			firstDeployment(o).Spec.Template.Spec.TerminationGracePeriodSeconds = &g
			return o
		}, "does not exceed drain"},
		{"selector-mismatch", func(o []chartrender.Object) []chartrender.Object {
			firstDeployment(o).Spec.Template.Labels["app.kubernetes.io/component"] = "other"
			return o
		}, "does not match the template labels"},
		{"no-checksum", func(o []chartrender.Object) []chartrender.Object {
			for _, x := range o {
				if d, ok := x.Typed.(*appsv1.Deployment); ok {
					for k := range d.Spec.Template.Annotations {
						if strings.HasPrefix(k, "checksum/") {
							delete(d.Spec.Template.Annotations, k)
						}
					}
				}
			}
			return o
		}, "no checksum/* annotation"},
		{"chart-secret", func(o []chartrender.Object) []chartrender.Object {
			return append(o, chartrender.Object{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, Name: "x",
				Typed: &corev1.Secret{}, JSON: map[string]any{"metadata": map[string]any{"labels": map[string]any{
					"app.kubernetes.io/name": "wakepush", "app.kubernetes.io/instance": "x", "app.kubernetes.io/managed-by": "Helm"}}}})
		}, "renders a Secret"},
		{"migration-not-hook", func(o []chartrender.Object) []chartrender.Object {
			for i := range o {
				if _, ok := o[i].Typed.(*batchv1.Job); ok && strings.Contains(o[i].Name, "migrat") {
					o[i].HookEvents = []string{"post-install"}
				}
			}
			return o
		}, "pre-install,pre-upgrade hook"},
		{"keda-above-partitions", func(o []chartrender.Object) []chartrender.Object {
			for i := range o {
				if o[i].GVK.Kind == "ScaledObject" {
					o[i].JSON["spec"].(map[string]any)["maxReplicaCount"] = int64(100000)
				}
			}
			return o
		}, "exceeds the"},
		{"no-labels", func(o []chartrender.Object) []chartrender.Object { delete(o[0].JSON, "metadata"); return o }, "no label app.kubernetes.io/name"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			_, objs := render(t, c)
			var clean recorder
			checkInvariants(&clean, objs)
			if len(clean.errs) > 0 {
				t.Fatalf("the unmutated render already fails: %v", clean.errs)
			}
			var r recorder
			checkInvariants(&r, m.mutate(objs))
			for _, e := range r.errs {
				if strings.Contains(e, m.want) {
					t.Logf("caught: %s", e)
					return
				}
			}
			t.Fatalf("no error containing %q; got %q", m.want, r.errs)
		})
	}
}

// richestCase is the values case that renders the most objects.
func richestCase(t *testing.T) valuesCase {
	t.Helper()
	ch, _ := loadChart(t)
	var best valuesCase
	n := -1
	for _, c := range valuesCases(t) {
		rel, err := chartrender.Render(ch, c.Vals, renderOpts(c.Name))
		if err != nil {
			continue
		}
		if k := len(chartrender.Split(rel)); k > n {
			best, n = c, k
		}
	}
	if n < 0 {
		t.Fatal("no values case renders")
	}
	return best
}
