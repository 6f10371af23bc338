package crdvalidate_test

import (
	"strings"
	"testing"

	"github.com/wakepush/wakepush/deploy/helm/crdvalidate"
	"sigs.k8s.io/yaml"
)

const scaledObject = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: so
  namespace: ns
spec:
  scaleTargetRef: {name: web}
  minReplicaCount: 1
  maxReplicaCount: 4
  triggers:
    - type: kafka
      metadata: {bootstrapServers: "k:9092", consumerGroup: g, lagThreshold: "10"}
`

func TestValidate(t *testing.T) {
	set, err := crdvalidate.LoadDir("../crds")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"valid", "", "", ""},
		{"unknown-field", "  minReplicaCount: 1", "  minReplicaCount: 1\n  pollingIntervall: 5", "spec.pollingIntervall"},
		{"unknown-metadata-field", "  name: so", "  name: so\n  lables: {a: b}", `"metadata.lables"`},
		{"unknown-nested-field", "scaleTargetRef: {name: web}", "scaleTargetRef: {name: web, knd: Deployment}", "spec.scaleTargetRef.knd"},
		{"wrong-type", "maxReplicaCount: 4", "maxReplicaCount: four", "spec.maxReplicaCount"},
		{"missing-required", "  scaleTargetRef: {name: web}\n", "", "spec.scaleTargetRef"},
		{"cel-min-above-max", "minReplicaCount: 1", "minReplicaCount: 9", "minReplicaCount must be less than or equal to maxReplicaCount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(scaledObject, tc.old, tc.new, 1)
			if tc.old != "" && doc == scaledObject {
				t.Fatalf("%q not in the document", tc.old)
			}
			obj, err := crdvalidate.DecodeYAML([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			err = set.Validate(t.Context(), obj)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid object rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error naming %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			if err != nil {
				t.Logf("rejected: %v", err)
			}
		})
	}
}

// TestInt64 pins the gotcha DecodeYAML exists for: decoded with sigs.k8s.io/yaml, integers are
// float64 and the CEL rules fail on a valid object.
func TestInt64(t *testing.T) {
	set, err := crdvalidate.LoadDir("../crds")
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(scaledObject), &obj); err != nil {
		t.Fatal(err)
	}
	if err := set.Validate(t.Context(), obj); err == nil {
		t.Log("float64 numbers pass too (the gotcha is gone in this apiextensions-apiserver)")
	} else {
		t.Logf("float64 numbers: %v", err)
	}
	obj, err = crdvalidate.DecodeYAML([]byte(scaledObject))
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Validate(t.Context(), obj); err != nil {
		t.Fatalf("int64 numbers: %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	set, err := crdvalidate.LoadDir("../crds")
	if err != nil {
		t.Fatal(err)
	}
	g := set.Groups()
	for _, want := range []string{"keda.sh", "monitoring.coreos.com", "gateway.networking.k8s.io"} {
		if !g[want] {
			t.Errorf("no CRD of group %s in ../crds", want)
		}
	}
}
