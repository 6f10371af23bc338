{{- define "wakepush.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "wakepush.commonEnv" -}}
- name: WAKEPUSH_KAFKA_BROKERS
  value: {{ .Values.kafka.brokers | quote }}
- name: WAKEPUSH_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: WAKEPUSH_KAFKA_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: WAKEPUSH_KAFKA_TLS
  value: {{ .Values.kafka.tls | quote }}
{{- if .Values.kafka.saslMechanism }}
- name: WAKEPUSH_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: WAKEPUSH_KAFKA_SASL_USERNAME
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.saslSecret }}, key: username}}
- name: WAKEPUSH_KAFKA_SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.saslSecret }}, key: password}}
{{- end }}
- name: WAKEPUSH_ADMIN_ADDR
  value: ":8081"
- name: WAKEPUSH_APPS_FILE
  value: /etc/wakepush/apps.yaml
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
{{- end }}
{{- if .Values.otel.tracesEndpoint }}
- name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  value: {{ .Values.otel.tracesEndpoint | quote }}
{{- end }}
{{- if or .Values.otel.endpoint .Values.otel.tracesEndpoint }}
{{- if .Values.otel.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.otel.sampler | quote }}
{{- end }}
{{- if .Values.otel.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.otel.samplerArg | quote }}
{{- end }}
- name: K8S_POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: K8S_NAMESPACE_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "wakepush.otelResourceAttributes" . | quote }}
{{- end }}
{{- end -}}

{{- /* OTEL_RESOURCE_ATTRIBUTES: the pod (through the variables above) and otel.resourceAttributes. */ -}}
{{- define "wakepush.otelResourceAttributes" -}}
{{- $attrs := list "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.pod.name=$(K8S_POD_NAME)" -}}
{{- range $k, $v := .Values.otel.resourceAttributes -}}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $v)) -}}
{{- end -}}
{{- join "," $attrs -}}
{{- end -}}
