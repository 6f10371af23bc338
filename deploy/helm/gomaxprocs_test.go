package helm_test

import (
	"path/filepath"
	"testing"

	"github.com/wakepush/wakepush/deploy/helm/chartrender"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestGoMaxProcs checks goMaxProcsFromRequests (off by default): when on, every service
// container with a CPU request and no CPU limit gets GOMAXPROCS from its own request, rounded up
// by the downward API; a CPU limit (which Go follows itself) or the operator's own GOMAXPROCS in
// extraEnv leave it alone.
func TestGoMaxProcs(t *testing.T) {
	base, err := chartrender.ReadValuesFile(filepath.Join(chartDir(), "ci", "minimal-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	limited := map[string]any{"resources": map[string]any{"limits": map[string]any{"cpu": "2", "memory": "1Gi"}}}
	own := map[string]any{"extraEnv": []any{map[string]any{"name": "GOMAXPROCS", "value": "3"}}}
	on := map[string]any{"goMaxProcsFromRequests": true}
	for _, tc := range []struct {
		name string
		over map[string]any
		// want is the GOMAXPROCS source per container: "request" (downward API), a literal
		// value, or "" (not set).
		want map[string]string
	}{
		{"defaults", nil, map[string]string{"ingest": "", "coalescer": "", "sender": "", "recorder": ""}},
		{"on", on, map[string]string{"ingest": "request", "coalescer": "request", "sender": "request", "recorder": "request"}},
		{"on, cpu limit", mergeValues(on, map[string]any{"sender": limited}), map[string]string{"ingest": "request", "coalescer": "request", "sender": "", "recorder": "request"}},
		{"on, extraEnv wins", mergeValues(on, map[string]any{"coalescer": own}), map[string]string{"ingest": "request", "coalescer": "3", "sender": "request", "recorder": "request"}},
		{"off, extraEnv", map[string]any{"coalescer": own}, map[string]string{"ingest": "", "coalescer": "3", "sender": "", "recorder": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, objs := render(t, valuesCase{Name: "gomaxprocs-" + tc.name, Path: "x", Vals: mergeValues(base, tc.over)})
			seen := map[string]bool{}
			for _, w := range podOwners(objs) {
				if !w.longRunning {
					continue
				}
				for _, c := range w.spec.Containers {
					want, ok := tc.want[c.Name]
					if !ok {
						continue
					}
					seen[c.Name] = true
					if got := goMaxProcsSource(t, c); got != want {
						t.Errorf("%s container %s: GOMAXPROCS from %q, want %q", w.obj.Name, c.Name, got, want)
					}
				}
			}
			for name := range tc.want {
				if !seen[name] {
					t.Errorf("no %s container rendered", name)
				}
			}
		})
	}
}

// goMaxProcsSource describes the container's GOMAXPROCS: "request" when it is its own CPU request
// in whole cores, the literal value, or "" when unset. Set twice is an error.
func goMaxProcsSource(t *testing.T, c corev1.Container) string {
	t.Helper()
	src := ""
	for _, e := range c.Env {
		if e.Name != "GOMAXPROCS" {
			continue
		}
		if src != "" {
			t.Errorf("container %s: GOMAXPROCS set twice", c.Name)
		}
		src = e.Value
		if e.ValueFrom != nil {
			r := e.ValueFrom.ResourceFieldRef
			if r == nil || r.Resource != "requests.cpu" || r.ContainerName != c.Name || r.Divisor.Cmp(resource.MustParse("1")) != 0 {
				t.Errorf("container %s: GOMAXPROCS from %+v, want its own requests.cpu with divisor 1", c.Name, e.ValueFrom)
				continue
			}
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Errorf("container %s: GOMAXPROCS from a CPU request it does not have", c.Name)
			}
			src = "request"
		}
	}
	return src
}
