{{- /*
wakepush.ctlPodSpec: the pod spec of a wakepushctl run (the migration Job, the test Pod).
(dict "root" $ "args" (list …) "job" bool "resources" …). job: the migration Job, which may use
its own Kafka user and ClickHouse DSN. It depends only on Secrets the user created, never on an
object of this chart: a pre-install hook runs before any of them exists.
*/ -}}
{{- define "wakepush.ctlPodSpec" -}}
{{- $v := .root.Values -}}
{{- $args := dict "root" .root "job" .job -}}
restartPolicy: Never
automountServiceAccountToken: false
enableServiceLinks: false
{{- if and .job $v.migrations.serviceAccountName }}
serviceAccountName: {{ $v.migrations.serviceAccountName | quote }}
{{- end }}
{{- with $v.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: wakepushctl
    image: {{ include "wakepush.image" (dict "root" .root "name" "wakepushctl") | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: {{ toJson .args }}
    securityContext:
      {{- toYaml $v.containerSecurityContext | nindent 6 }}
    env:
      {{- include "wakepush.kafkaEnv" $args | nindent 6 }}
      {{- include "wakepush.clickhouseEnv" $args | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- include "wakepush.kafkaMounts" $args | nindent 6 }}
      {{- include "wakepush.clickhouseMounts" $args | nindent 6 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- include "wakepush.kafkaVolumes" $args | nindent 2 }}
  {{- include "wakepush.clickhouseVolumes" $args | nindent 2 }}
{{- end -}}
