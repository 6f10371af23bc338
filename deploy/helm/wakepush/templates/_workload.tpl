{{- /*
wakepush.deployment renders one service Deployment. Arguments (dict):
  root       the chart context ($)
  component  app.kubernetes.io/component (ingest, ingest-xmpp, coalescer, sender, recorder)
  name       resource name suffix (ingest, xmpp-<connection>, coalescer, …)
  binary     image and container name (ingest, coalescer, sender, recorder)
  svc        the service's values (resources, extraEnv, podAnnotations, nodeSelector, tolerations, affinity)
  replicas   replica count, or "" when an autoscaler owns it (the field is then omitted)
  strategy   optional Deployment strategy (dict)
  extraLabels optional labels of the Deployment and its pods (dict); selectorLabels also select
  env        rendered EnvVar list (string)
  volumes    rendered extra Volume list (string)
  mounts     rendered extra VolumeMount list (string)
  ports      rendered extra ContainerPort list (string)
  apps       mount the apps file (bool)
  preStopSleep seconds of a preStop sleep (0: none)
*/ -}}
{{- define "wakepush.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $labelArgs := dict "root" $root "component" .component -}}
{{- $selector := fromYaml (include "wakepush.selectorLabels" $labelArgs) -}}
{{- range $k, $val := .extraLabels }}{{ $_ := set $selector $k $val }}{{ end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ printf "%s-%s" (include "wakepush.fullname" $root) .name }}
  labels:
    {{- include "wakepush.labels" $labelArgs | nindent 4 }}
    {{- range $k, $val := .extraLabels }}
    {{ $k }}: {{ $val | quote }}
    {{- end }}
spec:
  {{- if ne (toString .replicas) "" }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with .strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- range $k, $val := $selector }}
      {{ $k }}: {{ $val | quote }}
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "wakepush.labels" $labelArgs | nindent 8 }}
        {{- range $k, $val := .extraLabels }}
        {{ $k }}: {{ $val | quote }}
        {{- end }}
      annotations:
        {{- include "wakepush.scrapeAnnotations" $root | nindent 8 }}
        {{- if .apps }}
        {{- include "wakepush.checksumAnnotations" $root | nindent 8 }}
        {{- end }}
        {{- range $k, $val := .svc.podAnnotations }}
        {{ $k }}: {{ $val | quote }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "wakepush.serviceAccountName" $root | quote }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $v.image.pullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . | quote }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- with .svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- include "wakepush.topologySpread" (dict "root" $root "selector" $selector) | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .binary }}
          image: {{ include "wakepush.image" (dict "root" $root "name" .binary) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          env:
            {{- .env | nindent 12 }}
            {{- include "wakepush.goMaxProcs" (dict "root" $root "container" .binary "svc" .svc) | nindent 12 }}
            {{- with .svc.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: admin
              containerPort: {{ $v.ports.admin }}
              protocol: TCP
            {{- with .ports }}
            {{- . | nindent 12 }}
            {{- end }}
          {{- include "wakepush.probes" $root | nindent 10 }}
          {{- if gt (int .preStopSleep) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ .preStopSleep }}
          {{- end }}
          resources:
            {{- toYaml .svc.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if .apps }}
            - name: apps
              mountPath: /etc/wakepush/apps
              readOnly: true
            {{- end }}
            {{- include "wakepush.kafkaMounts" (dict "root" $root "job" false) | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if .apps }}
        {{- include "wakepush.appsVolume" $root | nindent 8 }}
        {{- end }}
        {{- include "wakepush.kafkaVolumes" (dict "root" $root "job" false) | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end -}}

{{- /* A PodDisruptionBudget: (dict "root" $ "component" … "name" … "extraLabels" …). */ -}}
{{- define "wakepush.pdb" -}}
{{- $labelArgs := dict "root" .root "component" .component -}}
{{- $selector := fromYaml (include "wakepush.selectorLabels" $labelArgs) -}}
{{- range $k, $val := .extraLabels }}{{ $_ := set $selector $k $val }}{{ end -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ printf "%s-%s" (include "wakepush.fullname" .root) .name }}
  labels:
    {{- include "wakepush.labels" $labelArgs | nindent 4 }}
spec:
  maxUnavailable: {{ .root.Values.pdb.maxUnavailable }}
  # A pod that is not ready (e.g. a component connection whose XMPP server is down) may always be
  # evicted: it serves nothing, and keeping it would block node drains.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- range $k, $val := $selector }}
      {{ $k }}: {{ $val | quote }}
      {{- end }}
{{- end -}}

{{- /*
wakepush.goMaxProcs: GOMAXPROCS from the container's CPU request, rounded up (divisor 1), when
goMaxProcsFromRequests is on, the container requests CPU, has no CPU limit (Go follows a limit by
itself) and its extraEnv does not set GOMAXPROCS. Arguments (dict): root, container, svc.
*/ -}}
{{- define "wakepush.goMaxProcs" -}}
{{- $res := .svc.resources | default dict -}}
{{- $requests := $res.requests | default dict -}}
{{- $limits := $res.limits | default dict -}}
{{- $own := false -}}
{{- range .svc.extraEnv }}{{ if eq .name "GOMAXPROCS" }}{{ $own = true }}{{ end }}{{ end -}}
{{- if and .root.Values.goMaxProcsFromRequests $requests.cpu (not $limits.cpu) (not $own) -}}
- name: GOMAXPROCS
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container | quote }}
      resource: requests.cpu
      divisor: "1"
{{- end -}}
{{- end -}}
