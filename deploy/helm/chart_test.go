package helm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/helm/chartrender"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// TestLint runs `helm lint --strict` (template errors, values schema, chart metadata; warnings
// fail) for every values case.
func TestLint(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			errs := chartrender.Lint(chartDir(), testNamespace, c.Vals)
			if len(errs) == 1 && defaultsRequire(c, errs[0]) {
				t.Skipf("the defaults alone do not render, as intended: %v", errs[0])
			}
			for _, err := range errs {
				t.Errorf("lint: %v", err)
			}
		})
	}
}

// TestRender renders every values case, decodes every object strictly (built-in kinds into the
// k8s.io/api types, custom resources against the vendored CRDs' schema and CEL rules) and checks
// the chart's invariants on the result.
func TestRender(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			_, objs := render(t, c)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GVK.Kind]++
			}
			t.Logf("%d objects: %v", len(objs), kinds)
			checkInvariants(t, objs)
		})
	}
}

// tb is the part of testing.TB the invariant checks use; TestInvariantsCatch records it.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// The images of wakepush's binaries (deploy/images): ghcr.io/wakepush/<name>.
var imageNames = map[string]bool{"ingest": true, "coalescer": true, "sender": true, "recorder": true, "wakepushctl": true}

var services = map[string]bool{"ingest": true, "coalescer": true, "sender": true, "recorder": true}

// podOwner is a rendered object with a pod template.
type podOwner struct {
	obj         *chartrender.Object
	spec        *corev1.PodSpec
	meta        *metav1.ObjectMeta // the pod template's (or the Pod's) metadata
	longRunning bool               // Deployment, StatefulSet, DaemonSet
	replicasSet bool               // spec.replicas present in the rendered YAML
}

func podOwners(objs []chartrender.Object) []podOwner {
	var out []podOwner
	for i := range objs {
		o := &objs[i]
		spec, _ := o.JSON["spec"].(map[string]any)
		_, hasReplicas := spec["replicas"]
		switch x := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, podOwner{o, &x.Spec.Template.Spec, &x.Spec.Template.ObjectMeta, true, hasReplicas})
		case *appsv1.StatefulSet:
			out = append(out, podOwner{o, &x.Spec.Template.Spec, &x.Spec.Template.ObjectMeta, true, hasReplicas})
		case *appsv1.DaemonSet:
			out = append(out, podOwner{o, &x.Spec.Template.Spec, &x.Spec.Template.ObjectMeta, true, false})
		case *batchv1.Job:
			out = append(out, podOwner{o, &x.Spec.Template.Spec, &x.Spec.Template.ObjectMeta, false, false})
		case *batchv1.CronJob:
			out = append(out, podOwner{o, &x.Spec.JobTemplate.Spec.Template.Spec, &x.Spec.JobTemplate.Spec.Template.ObjectMeta, false, false})
		case *corev1.Pod:
			out = append(out, podOwner{o, &x.Spec, &x.ObjectMeta, false, false})
		}
	}
	return out
}

// secretLike are environment variable names that must never carry a literal value.
var secretLike = regexp.MustCompile(`(PASSWORD|PASSWD|SECRET|KEY|KEYS|DSN|TOKEN|TOKENS|CREDENTIALS)$`)

// A literal that looks like a credential: a URL with user:password@, or a PEM block.
var secretValue = regexp.MustCompile(`://[^/\s:@]+:[^/\s@]+@|-----BEGIN [A-Z ]*PRIVATE KEY-----`)

func checkInvariants(t tb, objs []chartrender.Object) {
	t.Helper()
	owners := podOwners(objs)
	if len(owners) == 0 {
		t.Errorf("no workloads rendered")
		return
	}
	configMaps := map[string]bool{}
	var workloadLabels []labels.Set // pod labels of the long-running workloads (not hooks)
	var podLabels []labels.Set      // pod labels of every pod the chart makes, hooks included
	for i := range objs {
		if cm, ok := objs[i].Typed.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = true
		}
	}
	for _, w := range owners {
		if w.longRunning && !w.obj.IsHook() {
			workloadLabels = append(workloadLabels, labels.Set(w.meta.Labels))
		}
		podLabels = append(podLabels, labels.Set(w.meta.Labels))
	}
	partitions := -1

	// Every object: the standard labels (selectors and `helm ls`-style tooling rely on them).
	for i := range objs {
		o := &objs[i]
		md, _ := o.JSON["metadata"].(map[string]any)
		lbl, _ := md["labels"].(map[string]any)
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"} {
			if _, ok := lbl[k]; !ok {
				t.Errorf("%s: no label %s", o, k)
			}
		}
	}

	for _, w := range owners {
		o, spec := w.obj, w.spec
		kind := o.GVK.Kind
		isTestPod := o.HasHook("test")

		// Pods are only created as the chart's test hook; Jobs only as hooks.
		if kind == "Pod" && !isTestPod {
			t.Errorf("%s: a bare Pod that is not a helm test hook", o)
		}
		if strings.Contains(strings.ToLower(o.Name), "migrat") && kind == "Job" {
			if !o.HasHook("pre-install") || !o.HasHook("pre-upgrade") {
				t.Errorf("%s: the migration Job must be a pre-install,pre-upgrade hook, has %v", o, o.HookEvents)
			}
		}

		// Pod-level security.
		psc := spec.SecurityContext
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s: uses host namespaces", o)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Logf("%s: note: service account token is mounted (automountServiceAccountToken not false)", o)
		}

		all := make([]corev1.Container, 0, len(spec.InitContainers)+len(spec.Containers))
		all = append(all, spec.InitContainers...)
		all = append(all, spec.Containers...)
		for ci, c := range all {
			isInit := ci < len(spec.InitContainers)
			sidecar := isInit && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
			where := fmt.Sprintf("%s container %s", o, c.Name)

			// Probes: long-running containers (and sidecars) need all three. Plain init containers
			// cannot have probes (the API server rejects them); Jobs and test Pods run to completion.
			if w.longRunning && (!isInit || sidecar) {
				if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.StartupProbe == nil {
					t.Errorf("%s: liveness %v, readiness %v, startup %v: want all three", where, c.LivenessProbe != nil, c.ReadinessProbe != nil, c.StartupProbe != nil)
				}
			}

			// Resources: requests for CPU and memory, a memory limit.
			r := c.Resources
			if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
				t.Errorf("%s: resources.requests cpu and memory required, got %v", where, r.Requests)
			}
			if r.Limits.Memory().IsZero() {
				t.Errorf("%s: resources.limits.memory required", where)
			}

			// Security context: the container's, falling back to the pod's where Kubernetes does.
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			runAsNonRoot := sc.RunAsNonRoot
			if runAsNonRoot == nil && psc != nil {
				runAsNonRoot = psc.RunAsNonRoot
			}
			if runAsNonRoot == nil || !*runAsNonRoot {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !containsCap(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none, got %+v", where, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil && psc != nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
			}

			// Image: ghcr.io/wakepush/<binary>:<tag>, and a service's workload runs its own image.
			img := imageName(c.Image)
			if !imageNames[img] {
				t.Errorf("%s: image %q is not one of ghcr.io/wakepush/{ingest,coalescer,sender,recorder,wakepushctl}", where, c.Image)
			}
			if !strings.HasPrefix(c.Image, "ghcr.io/wakepush/") {
				t.Errorf("%s: image %q is not from ghcr.io/wakepush", where, c.Image)
			}
			if comp := w.meta.Labels["app.kubernetes.io/component"]; w.longRunning && services[comp] && img != comp {
				t.Errorf("%s: component %s runs image %q", where, comp, c.Image)
			}
			if strings.HasSuffix(c.Image, ":") || !strings.Contains(c.Image[strings.LastIndex(c.Image, "/")+1:], ":") && !strings.Contains(c.Image, "@sha256:") {
				t.Errorf("%s: image %q has no tag or digest", where, c.Image)
			}

			// Secrets only by reference.
			for _, e := range c.Env {
				if secretValue.MatchString(e.Value) {
					t.Errorf("%s: env %s has a literal that looks like a credential", where, e.Name)
				}
				if strings.HasSuffix(e.Name, "_FILE") {
					if e.ValueFrom == nil && !strings.HasPrefix(e.Value, "/") {
						t.Errorf("%s: env %s=%q is not an absolute path", where, e.Name, e.Value)
					}
					continue
				}
				if secretLike.MatchString(e.Name) && e.Value != "" {
					t.Errorf("%s: env %s has a literal value; secrets go in by secretKeyRef or as a *_FILE mount", where, e.Name)
				}
				if secretLike.MatchString(e.Name) && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					t.Errorf("%s: env %s comes from a ConfigMap; secrets belong in Secrets", where, e.Name)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && !configMaps[ef.ConfigMapRef.Name] {
					t.Logf("%s: envFrom ConfigMap %s (not rendered by the chart)", where, ef.ConfigMapRef.Name)
				}
			}

			// pprof is never exposed: no container port for it; it binds loopback only.
			pprofPort := 0
			for _, e := range c.Env {
				if e.Name == "WAKEPUSH_PPROF_ADDR" {
					host, port, _ := strings.Cut(e.Value, ":")
					if host != "127.0.0.1" && host != "localhost" && host != "[::1]" {
						t.Errorf("%s: WAKEPUSH_PPROF_ADDR=%q does not bind loopback", where, e.Value)
					}
					pprofPort, _ = strconv.Atoi(port)
				}
			}
			for _, p := range c.Ports {
				if strings.Contains(strings.ToLower(p.Name), "pprof") || (pprofPort != 0 && int(p.ContainerPort) == pprofPort) {
					t.Errorf("%s: port %s/%d exposes pprof", where, p.Name, p.ContainerPort)
				}
			}
			for _, e := range c.Env {
				if e.Name == "WAKEPUSH_ADMIN_ADDR" && pprofPort != 0 && strings.HasSuffix(e.Value, ":"+strconv.Itoa(pprofPort)) {
					t.Errorf("%s: the admin listener %s serves on the pprof port", where, e.Value)
				}
				if e.Name == "WAKEPUSH_KAFKA_PARTITIONS" {
					if n, err := strconv.Atoi(e.Value); err == nil {
						partitions = n
					}
				}
			}

			// Graceful shutdown: the grace period exceeds the drain timeout plus any preStop sleep.
			if w.longRunning && !isInit {
				var drain time.Duration
				for _, e := range c.Env {
					if e.Name == "WAKEPUSH_DRAIN_TIMEOUT" {
						d, err := time.ParseDuration(e.Value)
						if err != nil {
							t.Errorf("%s: WAKEPUSH_DRAIN_TIMEOUT=%q: %v", where, e.Value, err)
						}
						drain = d
					}
				}
				if drain == 0 && services[imageName(c.Image)] {
					t.Errorf("%s: no WAKEPUSH_DRAIN_TIMEOUT", where)
				}
				grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
				if spec.TerminationGracePeriodSeconds != nil {
					grace = *spec.TerminationGracePeriodSeconds
				}
				need := drain + preStopSleep(c)
				if time.Duration(grace)*time.Second <= need {
					t.Errorf("%s: terminationGracePeriodSeconds %d does not exceed drain %s + preStop %s", where, grace, drain, preStopSleep(c))
				}
			}
		}

		// Pod templates that mount a ConfigMap the chart renders roll when it changes.
		if w.longRunning {
			for _, v := range spec.Volumes {
				var cms []string
				if v.ConfigMap != nil {
					cms = append(cms, v.ConfigMap.Name)
				}
				if v.Projected != nil {
					for _, s := range v.Projected.Sources {
						if s.ConfigMap != nil {
							cms = append(cms, s.ConfigMap.Name)
						}
					}
				}
				for _, cm := range cms {
					if configMaps[cm] && !hasChecksum(w.meta.Annotations) {
						t.Errorf("%s: mounts ConfigMap %s rendered by the chart but its pod template has no checksum/* annotation", o, cm)
					}
				}
			}
		}
	}

	// Selectors.
	for i := range objs {
		o := &objs[i]
		switch x := o.Typed.(type) {
		case *appsv1.Deployment:
			checkTemplateSelector(t, o, x.Spec.Selector, x.Spec.Template.Labels)
		case *appsv1.StatefulSet:
			checkTemplateSelector(t, o, x.Spec.Selector, x.Spec.Template.Labels)
		case *appsv1.DaemonSet:
			checkTemplateSelector(t, o, x.Spec.Selector, x.Spec.Template.Labels)
		case *policyv1.PodDisruptionBudget:
			checkSelectsWorkload(t, o, x.Spec.Selector, workloadLabels)
		case *networkingv1.NetworkPolicy:
			checkSelectsWorkload(t, o, &x.Spec.PodSelector, podLabels) // hook pods need policies too
		case *corev1.Service:
			if len(x.Spec.Selector) == 0 {
				t.Errorf("%s: Service without a selector", o)
				break
			}
			checkSelectsWorkload(t, o, metav1.SetAsLabelSelector(x.Spec.Selector), workloadLabels)
			for _, p := range x.Spec.Ports {
				if strings.Contains(strings.ToLower(p.Name), "pprof") || strings.Contains(strings.ToLower(p.TargetPort.String()), "pprof") {
					t.Errorf("%s: port %s exposes pprof", o, p.Name)
				}
			}
		case *corev1.Secret:
			// The chart creates no Secrets: every credential is an existing Secret it references.
			t.Errorf("%s: the chart renders a Secret; reference an existing one instead", o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			checkScaleTarget(t, objs, o, x.Spec.ScaleTargetRef.Kind, x.Spec.ScaleTargetRef.Name)
		}
	}

	// References between objects: the Services a ServiceMonitor selects and the backends of an
	// Ingress or HTTPRoute are the chart's own.
	svcLabels := map[string]labels.Set{}
	for i := range objs {
		if svc, ok := objs[i].Typed.(*corev1.Service); ok {
			svcLabels[svc.Name] = labels.Set(svc.Labels)
		}
	}
	for i := range objs {
		o := &objs[i]
		spec, _ := o.JSON["spec"].(map[string]any)
		switch {
		case o.GVK.Group == "monitoring.coreos.com" && o.GVK.Kind == "ServiceMonitor":
			sel := &metav1.LabelSelector{}
			if raw, ok := spec["selector"]; ok {
				b, _ := yaml.Marshal(raw)
				if err := yaml.Unmarshal(b, sel); err != nil {
					t.Errorf("%s: selector: %v", o, err)
					continue
				}
			}
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil || s.Empty() {
				t.Errorf("%s: bad or empty selector: %v", o, err)
				continue
			}
			n := 0
			for _, l := range svcLabels {
				if s.Matches(l) {
					n++
				}
			}
			if n == 0 {
				t.Errorf("%s: selector %q selects no Service of the chart", o, s)
			}
		case o.GVK.Group == "gateway.networking.k8s.io" && o.GVK.Kind == "HTTPRoute":
			rules, _ := spec["rules"].([]any)
			for _, r := range rules {
				rm, _ := r.(map[string]any)
				refs, _ := rm["backendRefs"].([]any)
				for _, ref := range refs {
					name, _ := ref.(map[string]any)["name"].(string)
					if _, ok := svcLabels[name]; !ok {
						t.Errorf("%s: backendRef %s is not a Service of the chart", o, name)
					}
				}
			}
		}
		if ing, ok := o.Typed.(*networkingv1.Ingress); ok {
			for _, r := range ing.Spec.Rules {
				if r.HTTP == nil {
					continue
				}
				for _, p := range r.HTTP.Paths {
					if p.Backend.Service == nil {
						continue
					}
					if _, ok := svcLabels[p.Backend.Service.Name]; !ok {
						t.Errorf("%s: backend %s is not a Service of the chart", o, p.Backend.Service.Name)
					}
				}
			}
		}
	}

	// KEDA: a ScaledObject targets a rendered workload that leaves replicas to it, and never
	// scales beyond the topic's partitions (extra consumers of a group sit idle).
	for i := range objs {
		o := &objs[i]
		if o.GVK.Group != "keda.sh" || o.GVK.Kind != "ScaledObject" {
			continue
		}
		spec, _ := o.JSON["spec"].(map[string]any)
		ref, _ := spec["scaleTargetRef"].(map[string]any)
		kind, _ := ref["kind"].(string)
		name, _ := ref["name"].(string)
		checkScaleTarget(t, objs, o, kind, name)
		maxR, ok := spec["maxReplicaCount"].(int64)
		if !ok {
			t.Errorf("%s: no maxReplicaCount (KEDA's default 100 exceeds the partitions)", o)
		} else if partitions < 0 {
			t.Errorf("%s: no WAKEPUSH_KAFKA_PARTITIONS in any container to compare maxReplicaCount with", o)
		} else if maxR > int64(partitions) {
			t.Errorf("%s: maxReplicaCount %d exceeds the %d partitions", o, maxR, partitions)
		}
	}
}

func checkTemplateSelector(t tb, o *chartrender.Object, sel *metav1.LabelSelector, tmpl map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		t.Errorf("%s: bad or empty selector %v: %v", o, sel, err)
		return
	}
	if !s.Matches(labels.Set(tmpl)) {
		t.Errorf("%s: selector %s does not match the template labels %v", o, s, tmpl)
	}
}

func checkSelectsWorkload(t tb, o *chartrender.Object, sel *metav1.LabelSelector, workloads []labels.Set) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: bad selector: %v", o, err)
		return
	}
	n := 0
	for _, l := range workloads {
		if s.Matches(l) {
			n++
		}
	}
	if n == 0 {
		t.Errorf("%s: selector %q selects no workload of the chart", o, s)
	}
	if _, ok := o.Typed.(*policyv1.PodDisruptionBudget); ok && n > 1 {
		t.Errorf("%s: selector %q selects %d workloads; a budget per workload", o, s, n)
	}
}

func checkScaleTarget(t tb, objs []chartrender.Object, o *chartrender.Object, kind, name string) {
	t.Helper()
	if kind == "" {
		kind = "Deployment"
	}
	for _, w := range podOwners(objs) {
		if w.obj.GVK.Kind == kind && w.obj.Name == name {
			if w.replicasSet {
				t.Errorf("%s: targets %s %s, which sets spec.replicas (Helm and the autoscaler would fight on every upgrade)", o, kind, name)
			}
			return
		}
	}
	t.Errorf("%s: scale target %s %s is not rendered", o, kind, name)
}

func containsCap(caps []corev1.Capability, c corev1.Capability) bool {
	for _, x := range caps {
		if x == c {
			return true
		}
	}
	return false
}

func hasChecksum(ann map[string]string) bool {
	for k, v := range ann {
		if strings.HasPrefix(k, "checksum/") && v != "" {
			return true
		}
	}
	return false
}

// imageName is the last path element of an image reference, without tag or digest.
func imageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	ref = ref[strings.LastIndex(ref, "/")+1:]
	if i := strings.Index(ref, ":"); i >= 0 {
		ref = ref[:i]
	}
	return ref
}

func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0
	}
	if s := c.Lifecycle.PreStop.Sleep; s != nil {
		return time.Duration(s.Seconds) * time.Second
	}
	if e := c.Lifecycle.PreStop.Exec; e != nil {
		for i, a := range e.Command {
			if a == "sleep" && i+1 < len(e.Command) {
				if n, err := strconv.Atoi(e.Command[i+1]); err == nil {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	return 0
}

// TestBrokenValues: every testdata/broken-*.yaml is rejected by the render (values schema or a
// template's fail/required), and the error names the offending key. A file names what the error
// must contain with `# expect: <text>` lines; without them the error must name one of the keys
// the file sets. `# base: <values file>` (relative to the chart) renders it over that file.
func TestBrokenValues(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "broken-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/broken-*.yaml")
	}
	ch, _ := loadChart(t)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			expect, base := brokenHeader(string(raw))
			vals := map[string]any{}
			if base != "" {
				if vals, err = chartrender.ReadValuesFile(filepath.Join(chartDir(), base)); err != nil {
					t.Fatal(err)
				}
			}
			over, err := chartrender.ReadValuesFile(f)
			if err != nil {
				t.Fatal(err)
			}
			vals = mergeValues(vals, over)
			_, err = chartrender.Render(ch, vals, renderOpts("broken"))
			if err == nil {
				t.Fatalf("%s rendered without error", f)
			}
			msg := err.Error()
			if len(expect) == 0 {
				expect = keyPaths(over)
				for _, e := range expect {
					if strings.Contains(msg, e) {
						t.Logf("rejected, naming %q: %v", e, msg)
						return
					}
				}
				t.Fatalf("the error names none of the keys the file sets %v:\n%v", expect, msg)
			}
			for _, e := range expect {
				if !strings.Contains(msg, e) {
					t.Errorf("the error does not contain %q:\n%v", e, msg)
				}
			}
			t.Logf("rejected: %v", msg)
		})
	}
}

func brokenHeader(s string) (expect []string, base string) {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "# expect:"); ok {
			expect = append(expect, strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(l, "# base:"); ok {
			base = strings.TrimSpace(v)
		}
	}
	return expect, base
}

// keyPaths lists every key and dotted key path of v, longest first.
func keyPaths(v map[string]any) []string {
	seen := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			seen[p], seen[k] = true, true
			if sub, ok := x.(map[string]any); ok {
				walk(p, sub)
			}
		}
	}
	walk("", v)
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) || len(out[i]) == len(out[j]) && out[i] < out[j] })
	return out
}

// mergeValues merges over into base as helm does for several -f files (maps merge, the rest replaces).
func mergeValues(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// TestOfflineCatchesInjectedErrors shows that the strict decode and the CRD checks catch what
// `helm lint` and the values schema cannot: a misspelled field in a Deployment, and a ScaledObject
// that breaks a CEL rule, injected by a post-renderer.
func TestOfflineCatchesInjectedErrors(t *testing.T) {
	ch, crds := loadChart(t)
	c := kedaCase(t)
	for _, tc := range injections {
		t.Run(tc.name, func(t *testing.T) {
			o := renderOpts(c.Name)
			o.PostRenderer = funcPostRenderer(tc.inject(t))
			rel, err := chartrender.Render(ch, c.Vals, o)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			_, err = chartrender.NewDecoder(crds).DecodeAll(context.Background(), rel)
			if err == nil || !strings.Contains(err.Error(), tc.offline) {
				t.Fatalf("decode error %v, want one containing %q", err, tc.offline)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// injections are post-render edits the values schema cannot produce, each with the error the
// offline check and the API server give.
var injections = []struct {
	name            string
	inject          func(t *testing.T) func(string) string
	offline, server string
}{
	{
		name: "misspelled-deployment-field",
		inject: func(t *testing.T) func(string) string {
			return replaceOnce(t, "Deployment", regexp.MustCompile(`(?m)^(\s+)imagePullPolicy:`), "${1}imagePullPolicyy:")
		},
		offline: `unknown field "spec.template.spec.containers[0].imagePullPolicyy"`,
		server:  "imagePullPolicyy: field not declared in schema",
	},
	{
		name: "scaledobject-cel-min-above-max",
		inject: func(t *testing.T) func(string) string {
			return replaceOnce(t, "ScaledObject", regexp.MustCompile(`(?m)^(\s+)minReplicaCount: *\d+`), "${1}minReplicaCount: 100000")
		},
		offline: "minReplicaCount must be less than or equal to maxReplicaCount",
		server:  "minReplicaCount must be less than or equal to maxReplicaCount",
	},
}

// replaceOnce returns a post-render edit replacing the first match of re in the first document
// of the given kind; the test fails when nothing matched (the chart changed shape).
func replaceOnce(t *testing.T, kind string, re *regexp.Regexp, repl string) func(string) string {
	kindRE := regexp.MustCompile(`(?m)^kind: *` + kind + `\s*$`)
	return func(s string) string {
		docs := strings.SplitAfter(s, "\n---")
		for i, d := range docs {
			if !kindRE.MatchString(d) {
				continue
			}
			loc := re.FindStringSubmatchIndex(d)
			if loc == nil {
				continue
			}
			dst := re.ExpandString(nil, repl, d, loc)
			docs[i] = d[:loc[0]] + string(dst) + d[loc[1]:]
			return strings.Join(docs, "")
		}
		t.Errorf("post-renderer: no %s matching %s in the rendered chart", kind, re)
		return s
	}
}

// kedaCase is a values case that renders a ScaledObject.
func kedaCase(t *testing.T) valuesCase {
	t.Helper()
	ch, _ := loadChart(t)
	for _, c := range valuesCases(t) {
		rel, err := chartrender.Render(ch, c.Vals, renderOpts(c.Name))
		if err == nil && strings.Contains(rel.Manifest, "kind: ScaledObject") {
			return c
		}
	}
	t.Fatal("no values case renders a KEDA ScaledObject")
	return valuesCase{}
}

// yamlString is a helper for debugging output.
func yamlString(v any) string { b, _ := yaml.Marshal(v); return string(b) }
