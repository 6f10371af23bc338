// Package chartrender renders a Helm chart with the Helm v4 SDK (client-side, no cluster), lints
// it, and decodes every rendered object strictly: built-in kinds into the k8s.io/api types (an
// unknown or misspelled field is an error), custom resources against their CRDs
// (package crdvalidate: unknown fields, OpenAPI schema, CEL rules).
package chartrender

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/postrenderer"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/wakepush/wakepush/deploy/helm/crdvalidate"
)

// KubeVersion is the Kubernetes version renders and lints assume (.Capabilities.KubeVersion; the
// client-side default would be v1.20.0): the version of the kube-apiserver the install tests use.
const KubeVersion = "v1.37.2"

func kubeVersion() *common.KubeVersion {
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		panic(err)
	}
	return kv
}

// Options of a render.
type Options struct {
	ReleaseName, Namespace string
	// APIVersions the cluster is assumed to serve besides the built-in ones (.Capabilities.APIVersions),
	// e.g. "keda.sh/v1alpha1".
	APIVersions []string
	// PostRenderer, if set, rewrites the rendered manifests (hooks included).
	PostRenderer postrenderer.PostRenderer
}

// Load loads the chart in dir.
func Load(dir string) (*chart.Chart, error) { return loader.Load(dir) }

// Render renders the chart with vals (merged over the chart's values.yaml, validated against its
// values.schema.json) as `helm install --dry-run=client` does, hooks and test hooks included.
func Render(ch *chart.Chart, vals map[string]any, o Options) (*release.Release, error) {
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = o.ReleaseName
	inst.Namespace = o.Namespace
	inst.Replace = true
	inst.APIVersions = append(common.VersionSet(nil), o.APIVersions...)
	inst.KubeVersion = kubeVersion()
	inst.PostRenderer = o.PostRenderer
	r, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("install returned %T, want *release.Release", r)
	}
	return rel, nil
}

// Lint runs `helm lint --strict` on the chart in dir with vals; warnings count as errors.
func Lint(dir, namespace string, vals map[string]any) []error {
	l := action.NewLint()
	l.Strict = true
	l.Namespace = namespace
	l.KubeVersion = kubeVersion()
	res := l.Run([]string{dir}, vals)
	return res.Errors
}

// ReadValuesFile reads a values file as `helm -f` does.
func ReadValuesFile(path string) (map[string]any, error) {
	v, err := common.ReadValuesFile(path)
	if err != nil {
		return nil, err
	}
	return v.AsMap(), nil
}

// Object is one rendered object.
type Object struct {
	Source     string   // template path, from the "# Source:" comment
	HookEvents []string // helm.sh/hook events; empty for a regular object
	YAML       []byte
	GVK        schema.GroupVersionKind
	Name       string
	Namespace  string
	Typed      runtime.Object // built-in kinds, strictly decoded; nil for custom resources
	JSON       map[string]any // every object, integers as int64
}

// IsHook reports whether o is a hook of any event.
func (o *Object) IsHook() bool { return len(o.HookEvents) > 0 }

// HasHook reports whether o is a hook for event.
func (o *Object) HasHook(event string) bool {
	for _, e := range o.HookEvents {
		if e == event {
			return true
		}
	}
	return false
}

func (o *Object) String() string {
	return fmt.Sprintf("%s %s (%s)", o.GVK.Kind, o.Name, o.Source)
}

// Scheme returns the scheme of every built-in kind (client-go's: core, apps, batch, policy,
// autoscaling/v2, networking, rbac, …).
func Scheme() *runtime.Scheme {
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		panic(err)
	}
	return sch
}

var sourceRE = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// Split returns the rendered documents of rel: the manifest, then every hook.
func Split(rel *release.Release) []Object {
	var out []Object
	add := func(manifest string, events []string, path string) {
		docs := releaseutil.SplitManifests(manifest)
		keys := make([]string, 0, len(docs))
		for k := range docs {
			keys = append(keys, k)
		}
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, k := range keys {
			d := docs[k]
			if strings.TrimSpace(stripComments(d)) == "" {
				continue
			}
			o := Object{YAML: []byte(d), HookEvents: events, Source: path}
			if m := sourceRE.FindStringSubmatch(d); m != nil {
				o.Source = m[1]
			}
			out = append(out, o)
		}
	}
	add(rel.Manifest, nil, "")
	for _, h := range rel.Hooks {
		ev := make([]string, len(h.Events))
		for i, e := range h.Events {
			ev[i] = string(e)
		}
		if len(ev) == 0 {
			ev = []string{"unknown"}
		}
		add(h.Manifest, ev, h.Path)
	}
	return out
}

func stripComments(d string) string {
	var b strings.Builder
	for _, l := range strings.Split(d, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Decoder decodes rendered objects strictly.
type Decoder struct {
	scheme *runtime.Scheme
	dec    runtime.Decoder
	crds   *crdvalidate.Set
}

// NewDecoder returns a strict decoder for the built-in kinds and the custom resources of crds.
func NewDecoder(crds *crdvalidate.Set) *Decoder {
	sch := Scheme()
	return &Decoder{scheme: sch, dec: serializer.NewCodecFactory(sch, serializer.EnableStrict).UniversalDeserializer(), crds: crds}
}

// Decode fills o's GVK, name, JSON and (for built-in kinds) Typed, and validates custom
// resources against their CRD. A kind that is neither built in nor in the CRD set is an error.
func (d *Decoder) Decode(ctx context.Context, o *Object) error {
	j, err := crdvalidate.DecodeYAML(o.YAML)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Source, err)
	}
	o.JSON = j
	apiVersion, _ := j["apiVersion"].(string)
	kind, _ := j["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || kind == "" {
		return fmt.Errorf("%s: no apiVersion/kind (%q, %q)", o.Source, apiVersion, kind)
	}
	o.GVK = gv.WithKind(kind)
	if md, ok := j["metadata"].(map[string]any); ok {
		o.Name, _ = md["name"].(string)
		o.Namespace, _ = md["namespace"].(string)
	}
	if d.scheme.Recognizes(o.GVK) {
		obj, _, err := d.dec.Decode(o.YAML, nil, nil)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", o.Source, o.GVK.Kind, err)
		}
		o.Typed = obj
		return nil
	}
	if d.crds != nil && d.crds.Has(o.GVK) {
		if err := d.crds.Validate(ctx, j); err != nil {
			return fmt.Errorf("%s: %w", o.Source, err)
		}
		return nil
	}
	return fmt.Errorf("%s: %s is neither a built-in kind nor served by a vendored CRD (deploy/helm/crds)", o.Source, o.GVK)
}

// DecodeAll splits and decodes every object of rel; the error joins every failure.
func (d *Decoder) DecodeAll(ctx context.Context, rel *release.Release) ([]Object, error) {
	objs := Split(rel)
	var errs []error
	for i := range objs {
		if err := d.Decode(ctx, &objs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return objs, errors.Join(errs...)
}
