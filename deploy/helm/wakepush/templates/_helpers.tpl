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
{{- end -}}
