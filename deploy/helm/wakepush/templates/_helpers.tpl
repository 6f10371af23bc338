{{- /* Names ------------------------------------------------------------------------------ */ -}}

{{- define "wakepush.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wakepush.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wakepush.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wakepush.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- /* The image of a binary: (dict "root" $ "name" "ingest"). */ -}}
{{- define "wakepush.image" -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .name (include "wakepush.tag" .root) -}}
{{- end -}}

{{- define "wakepush.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wakepush.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* Labels ----------------------------------------------------------------------------- */ -}}

{{- /* Selector labels of a component: (dict "root" $ "component" "ingest"). */ -}}
{{- define "wakepush.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wakepush.name" .root | quote }}
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
{{- if .component }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end }}
{{- end -}}

{{- /* All labels of a resource: (dict "root" $ "component" "ingest"); component may be empty. */ -}}
{{- define "wakepush.labels" -}}
helm.sh/chart: {{ include "wakepush.chart" .root | quote }}
{{ include "wakepush.selectorLabels" . }}
app.kubernetes.io/version: {{ include "wakepush.tag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service | quote }}
app.kubernetes.io/part-of: "wakepush"
{{- range $k, $v := .root.Values.commonLabels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{- /* Checks run once per render (called from workloads.yaml). ---------------------------- */ -}}
{{- define "wakepush.validate" -}}
{{- $v := .Values -}}
{{- $_ := required "kafka.brokers is required: the Kafka bootstrap brokers, e.g. my-cluster-kafka-bootstrap.kafka:9093" $v.kafka.brokers -}}
{{- $_ = required "clickhouse.existingSecret is required: the name of a Secret holding the recorder's ClickHouse DSN (key clickhouse.dsnKey)" $v.clickhouse.existingSecret -}}
{{- $_ = required "ingest.existingSecret is required: the name of a Secret holding ingest's node keys and device-id key (keys ingest.secretKeys.*)" $v.ingest.existingSecret -}}
{{- $_ = required "apps.config or apps.existingConfigMap is required: the apps file (docs/apps.md) the services read" (or $v.apps.config $v.apps.existingConfigMap) -}}
{{- if and $v.apps.config $v.apps.existingConfigMap -}}
{{- fail "set apps.config or apps.existingConfigMap, not both" -}}
{{- end -}}
{{- if and $v.kafka.sasl.mechanism (or (not $v.kafka.sasl.username) (not $v.kafka.sasl.existingSecret)) -}}
{{- fail (printf "kafka.sasl.mechanism=%s needs kafka.sasl.username and kafka.sasl.existingSecret (the Secret with the password)" $v.kafka.sasl.mechanism) -}}
{{- end -}}
{{- if and (eq $v.kafka.sasl.mechanism "plain") (not $v.kafka.tls.enabled) (not $v.kafka.sasl.allowPlaintext) -}}
{{- fail "kafka.sasl.mechanism=plain sends the password in clear: enable kafka.tls.enabled (or set kafka.sasl.allowPlaintext)" -}}
{{- end -}}
{{- if and $v.kafka.tls.caSecret.name (not $v.kafka.tls.enabled) -}}
{{- fail "kafka.tls.caSecret.name is set but kafka.tls.enabled is false" -}}
{{- end -}}
{{- if and (or $v.clickhouse.tls.caSecret.name $v.clickhouse.tls.serverName $v.clickhouse.tls.clientCertSecret) (not $v.clickhouse.tls.enabled) -}}
{{- fail "clickhouse.tls.caSecret, serverName or clientCertSecret is set but clickhouse.tls.enabled is false" -}}
{{- end -}}
{{- $grace := int $v.terminationGracePeriodSeconds -}}
{{- $need := add (int $v.drainTimeoutSeconds) (int $v.ingest.preStopSleepSeconds) -}}
{{- if le $grace $need -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed drainTimeoutSeconds + ingest.preStopSleepSeconds (%d), or pods are killed before they drained" $grace $need) -}}
{{- end -}}
{{- range $name := list "coalescer" "sender" "recorder" -}}
{{- $k := (index $v $name).keda -}}
{{- if $k.enabled -}}
{{- if gt (int $k.maxReplicas) (int $v.kafka.partitions) -}}
{{- fail (printf "%s.keda.maxReplicas (%d) exceeds kafka.partitions (%d): a consumer group never has more active members than partitions, the extra replicas would sit idle" $name (int $k.maxReplicas) (int $v.kafka.partitions)) -}}
{{- end -}}
{{- if gt (int $k.minReplicas) (int $k.maxReplicas) -}}
{{- fail (printf "%s.keda.minReplicas (%d) exceeds %s.keda.maxReplicas (%d)" $name (int $k.minReplicas) $name (int $k.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.ingest.autoscaling.enabled (gt (int $v.ingest.autoscaling.minReplicas) (int $v.ingest.autoscaling.maxReplicas)) -}}
{{- fail "ingest.autoscaling.minReplicas exceeds ingest.autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and $v.pprof.enabled (or (eq (int $v.pprof.port) (int $v.ports.admin)) (eq (int $v.pprof.port) (int $v.ports.http))) -}}
{{- fail "pprof.port must differ from ports.admin and ports.http" -}}
{{- end -}}
{{- $names := dict -}}
{{- $prosodyJids := dict -}}
{{- range $c := $v.xmpp.connections -}}
{{- if hasKey $names $c.name -}}
{{- fail (printf "xmpp.connections: the name %q is used twice" $c.name) -}}
{{- end -}}
{{- $_ := set $names $c.name true -}}
{{- if ne (default "prosody" $c.server) "ejabberd" -}}
{{- if or (gt (int (default 1 $c.replicas)) 1) (gt (int (default 1 $c.connectionsPerPod)) 1) -}}
{{- fail (printf "xmpp.connections %s: Prosody accepts one connection per component JID; replicas and connectionsPerPod must be 1 (add a connection with another JID to scale)" $c.name) -}}
{{- end -}}
{{- $key := printf "%s@%s" (lower $c.jid) $c.address -}}
{{- if hasKey $prosodyJids $key -}}
{{- fail (printf "xmpp.connections: %s is listed twice; Prosody accepts one connection per component JID" $key) -}}
{{- end -}}
{{- $_ := set $prosodyJids $key true -}}
{{- end -}}
{{- if and $c.tls $c.tls.caSecret $c.tls.caSecret.name (not $c.tls.enabled) -}}
{{- fail (printf "xmpp.connections %s: tls.caSecret is set but tls.enabled is false" $c.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Environment ------------------------------------------------------------------------ */ -}}

{{- /* Settings every service and wakepushctl share: Kafka and logging. (dict "root" $ "job" bool)
     job: the migration Job, which may use its own Kafka user. */ -}}
{{- define "wakepush.kafkaEnv" -}}
{{- $v := .root.Values -}}
- name: WAKEPUSH_KAFKA_BROKERS
  value: {{ $v.kafka.brokers | quote }}
- name: WAKEPUSH_KAFKA_PARTITIONS
  value: {{ $v.kafka.partitions | quote }}
- name: WAKEPUSH_KAFKA_REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
- name: WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS
  value: {{ $v.kafka.minInsyncReplicas | quote }}
- name: WAKEPUSH_KAFKA_TLS
  value: {{ $v.kafka.tls.enabled | quote }}
{{- if $v.kafka.tls.caSecret.name }}
- name: WAKEPUSH_KAFKA_CA_FILE
  value: /etc/wakepush/kafka-ca/ca.crt
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
- name: WAKEPUSH_KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: WAKEPUSH_KAFKA_SASL_USERNAME
  value: {{ ternary (default $v.kafka.sasl.username $v.migrations.kafkaSaslUsername) $v.kafka.sasl.username (eq .job true) | quote }}
- name: WAKEPUSH_KAFKA_SASL_PASSWORD_FILE
  value: /etc/wakepush/kafka-sasl/password
{{- if $v.kafka.sasl.allowPlaintext }}
- name: WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT
  value: "true"
{{- end }}
{{- end }}
{{- end -}}

{{- define "wakepush.kafkaVolumes" -}}
{{- $v := .root.Values -}}
{{- if $v.kafka.tls.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $v.kafka.tls.caSecret.name | quote }}
    items:
      - key: {{ $v.kafka.tls.caSecret.key | quote }}
        path: ca.crt
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
- name: kafka-sasl
  secret:
    secretName: {{ ternary (default $v.kafka.sasl.existingSecret $v.migrations.kafkaSaslExistingSecret) $v.kafka.sasl.existingSecret (eq .job true) | quote }}
    items:
      - key: {{ $v.kafka.sasl.passwordKey | quote }}
        path: password
{{- end }}
{{- end -}}

{{- define "wakepush.kafkaMounts" -}}
{{- $v := .root.Values -}}
{{- if $v.kafka.tls.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/wakepush/kafka-ca
  readOnly: true
{{- end }}
{{- if $v.kafka.sasl.mechanism }}
- name: kafka-sasl
  mountPath: /etc/wakepush/kafka-sasl
  readOnly: true
{{- end }}
{{- end -}}

{{- /* ClickHouse settings of the recorder, the migration Job (job: true) and the test Pod. */ -}}
{{- define "wakepush.clickhouseEnv" -}}
{{- $t := .root.Values.clickhouse.tls -}}
- name: WAKEPUSH_CLICKHOUSE_DSN_FILE
  value: /etc/wakepush/clickhouse/dsn
{{- if $t.enabled }}
- name: WAKEPUSH_CLICKHOUSE_TLS
  value: "true"
{{- if $t.caSecret.name }}
- name: WAKEPUSH_CLICKHOUSE_CA_FILE
  value: /etc/wakepush/clickhouse-ca/ca.crt
{{- end }}
{{- if $t.serverName }}
- name: WAKEPUSH_CLICKHOUSE_TLS_SERVER_NAME
  value: {{ $t.serverName | quote }}
{{- end }}
{{- if $t.clientCertSecret }}
- name: WAKEPUSH_CLICKHOUSE_CERT_FILE
  value: /etc/wakepush/clickhouse-client/tls.crt
- name: WAKEPUSH_CLICKHOUSE_KEY_FILE
  value: /etc/wakepush/clickhouse-client/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "wakepush.clickhouseVolumes" -}}
{{- $v := .root.Values -}}
{{- $t := $v.clickhouse.tls -}}
- name: clickhouse
  secret:
    {{- if eq .job true }}
    secretName: {{ default $v.clickhouse.existingSecret $v.migrations.clickhouseExistingSecret | quote }}
    items:
      - key: {{ ternary $v.migrations.clickhouseDsnKey $v.clickhouse.dsnKey (ne $v.migrations.clickhouseExistingSecret "") | quote }}
        path: dsn
    {{- else }}
    secretName: {{ $v.clickhouse.existingSecret | quote }}
    items:
      - key: {{ $v.clickhouse.dsnKey | quote }}
        path: dsn
    {{- end }}
{{- if and $t.enabled $t.caSecret.name }}
- name: clickhouse-ca
  secret:
    secretName: {{ $t.caSecret.name | quote }}
    items:
      - key: {{ $t.caSecret.key | quote }}
        path: ca.crt
{{- end }}
{{- if and $t.enabled $t.clientCertSecret }}
- name: clickhouse-client
  secret:
    secretName: {{ $t.clientCertSecret | quote }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end -}}

{{- define "wakepush.clickhouseMounts" -}}
{{- $t := .root.Values.clickhouse.tls -}}
- name: clickhouse
  mountPath: /etc/wakepush/clickhouse
  readOnly: true
{{- if and $t.enabled $t.caSecret.name }}
- name: clickhouse-ca
  mountPath: /etc/wakepush/clickhouse-ca
  readOnly: true
{{- end }}
{{- if and $t.enabled $t.clientCertSecret }}
- name: clickhouse-client
  mountPath: /etc/wakepush/clickhouse-client
  readOnly: true
{{- end }}
{{- end -}}

{{- /* Settings of the four services: logging, admin, drain, pprof, the apps file, telemetry. */ -}}
{{- define "wakepush.serviceEnv" -}}
{{- $v := .root.Values -}}
{{- include "wakepush.kafkaEnv" (dict "root" .root "job" false) }}
{{- if $v.migrations.enabled }}
- name: WAKEPUSH_KAFKA_CREATE_TOPICS
  value: "false"
{{- end }}
- name: WAKEPUSH_ADMIN_ADDR
  value: {{ printf ":%d" (int $v.ports.admin) | quote }}
{{- if $v.pprof.enabled }}
- name: WAKEPUSH_PPROF_ADDR
  value: {{ printf "127.0.0.1:%d" (int $v.pprof.port) | quote }}
{{- end }}
- name: WAKEPUSH_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: WAKEPUSH_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
- name: WAKEPUSH_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int $v.drainTimeoutSeconds) | quote }}
{{- if ne .component "recorder" }}
- name: WAKEPUSH_APPS_FILE
  value: {{ printf "/etc/wakepush/apps/%s" (ternary $v.apps.configMapKey "apps.yaml" (ne $v.apps.existingConfigMap "")) | quote }}
{{- end }}
{{- include "wakepush.otelEnv" .root }}
{{- end -}}

{{- define "wakepush.otelEnv" -}}
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

{{- /* ingest's keys, shared by the HTTP pods and the connection pods. */ -}}
{{- define "wakepush.ingestSecretEnv" -}}
- name: WAKEPUSH_NODE_KEYS_FILE
  value: /etc/wakepush/ingest/node-keys
- name: WAKEPUSH_DEVICE_ID_KEY_FILE
  value: /etc/wakepush/ingest/device-id-key
{{- with .Values.ingest.adhocApps }}
- name: WAKEPUSH_ADHOC_APPS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.ingest.pushModules }}
- name: WAKEPUSH_PUSH_MODULES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.ingest.unregisteredRetention }}
- name: WAKEPUSH_UNREGISTERED_RETENTION
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- /* The ingest Secret volume; http: also the event tokens. */ -}}
{{- define "wakepush.ingestSecretVolume" -}}
{{- $k := .root.Values.ingest.secretKeys -}}
- name: ingest-keys
  secret:
    secretName: {{ .root.Values.ingest.existingSecret | quote }}
    items:
      - key: {{ $k.nodeKeys | quote }}
        path: node-keys
      - key: {{ $k.deviceIdKey | quote }}
        path: device-id-key
      {{- if and .http $k.eventTokens }}
      - key: {{ $k.eventTokens | quote }}
        path: event-tokens
      {{- end }}
{{- end -}}

{{- /* Pod-level pieces ------------------------------------------------------------------- */ -}}

{{- define "wakepush.appsVolume" -}}
- name: apps
  configMap:
    name: {{ default (printf "%s-apps" (include "wakepush.fullname" .)) .Values.apps.existingConfigMap | quote }}
{{- end -}}

{{- define "wakepush.checksumAnnotations" -}}
{{- if .Values.apps.config }}
checksum/apps: {{ .Values.apps.config | sha256sum | quote }}
{{- end }}
{{- end -}}

{{- define "wakepush.scrapeAnnotations" -}}
{{- if .Values.monitoring.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: "/metrics"
{{- end }}
{{- end -}}

{{- define "wakepush.probes" -}}
{{- $p := .Values.probes -}}
startupProbe:
  httpGet: {path: /livez, port: admin}
  {{- toYaml $p.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /livez, port: admin}
  {{- toYaml $p.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  {{- toYaml $p.readiness | nindent 2 }}
{{- end -}}

{{- /* topologySpreadConstraints with the workload's selector where none is given:
     (dict "root" $ "selector" (dict …)). */ -}}
{{- define "wakepush.topologySpread" -}}
{{- range .root.Values.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $.selector) }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end -}}
