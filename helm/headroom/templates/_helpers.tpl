{{/*
Names and labels of the objects this chart renders.
*/}}
{{- define "headroom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "headroom.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "headroom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "headroom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "headroom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "headroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "headroom.exampleSelectorLabels" -}}
{{ include "headroom.selectorLabels" . }}
app.kubernetes.io/component: example
{{- end }}

{{/*
The sidecar's values: `.Values.headroom` when the template is included from a
chart that depends on this one (as `headroom`), else `.Values` (this chart).
Returned as YAML, for fromYaml.
*/}}
{{- define "headroom.sidecarValues" -}}
{{- if kindIs "map" .Values.headroom }}
{{- toYaml .Values.headroom }}
{{- else }}
{{- toYaml .Values }}
{{- end }}
{{- end }}

{{/*
The headroom sidecar container, as one item of a pod's `containers:` list:

  containers:
    - name: app
      ...
    {{- include "headroom.container" . | nindent 4 }}

The pod needs `shareProcessNamespace: true`. Only `.Values` is read, so a
context of `(dict "Values" $someValues)` works too.
*/}}
{{- define "headroom.container" -}}
{{- $v := include "headroom.sidecarValues" . | fromYaml }}
{{- $t := $v.target | default dict }}
{{- if not (or $t.process $t.pid) }}
{{- fail "headroom: set target.process (the Go process's name) or target.pid" }}
{{- end }}
{{- if not (has $v.procAccess (list "sameUser" "sysPtrace")) }}
{{- fail (printf "headroom: procAccess must be sameUser or sysPtrace, not %q" (toString $v.procAccess)) }}
{{- end }}
{{- $port := int $v.port -}}
- name: {{ $v.containerName | default "headroom" }}
  image: {{ printf "%s:%s" $v.image.repository (toString $v.image.tag) | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - run
    {{- with $t.process }}
    - --process
    - {{ . | quote }}
    {{- end }}
    {{- with $t.pid }}
    - --pid
    - {{ . | toString | quote }}
    {{- end }}
    {{- with $v.goUrl }}
    - --go-url
    - {{ . | quote }}
    {{- end }}
    - --limit-basis
    - {{ $v.limitBasis | quote }}
    {{- with $v.memoryLimit }}
    - --memory-limit
    - {{ . | quote }}
    {{- end }}
    {{- if ne $port 9184 }}
    - --listen
    - {{ printf "0.0.0.0:%d" $port | quote }}
    {{- end }}
    - --log-format
    - {{ $v.logFormat | quote }}
    {{- if $v.profiles.enabled }}
    - --profile-dir
    - /var/lib/headroom/profiles
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    # For the labels of the alerts headroom sends itself.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    # The downward API has no container name: this is the watched one's.
    - name: CONTAINER_NAME
      value: {{ $t.containerName | default "app" | quote }}
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ $port }}
      protocol: TCP
  {{- with $v.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- if eq $v.procAccess "sysPtrace" }}
    # Root with CAP_SYS_PTRACE alone: ptrace-read access to a target of
    # another UID, or to a root target (whose capabilities exceed ours).
    runAsUser: 0
    runAsNonRoot: false
    {{- else }}
    # Same UID and GID as the target: ptrace-read access without capabilities.
    runAsNonRoot: true
    {{- with $v.runAsUser }}
    runAsUser: {{ int . }}
    {{- end }}
    {{- with $v.runAsGroup }}
    runAsGroup: {{ int . }}
    {{- end }}
    {{- end }}
    allowPrivilegeEscalation: false
    privileged: false
    readOnlyRootFilesystem: true
    capabilities:
      drop:
        - ALL
      {{- if eq $v.procAccess "sysPtrace" }}
      add:
        - SYS_PTRACE
      {{- end }}
    seccompProfile:
      type: RuntimeDefault
  {{- if $v.profiles.enabled }}
  volumeMounts:
    - name: headroom-profiles
      mountPath: /var/lib/headroom/profiles
  {{- end }}
{{- end }}

{{/*
The sidecar's volumes, as items of a pod's `volumes:` list (none unless
profiles are on):

  {{- with include "headroom.volumes" . }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
*/}}
{{- define "headroom.volumes" -}}
{{- $v := include "headroom.sidecarValues" . | fromYaml }}
{{- if $v.profiles.enabled -}}
- name: headroom-profiles
  emptyDir:
    sizeLimit: {{ $v.profiles.sizeLimit }}
{{- end }}
{{- end }}
