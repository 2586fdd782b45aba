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

{{- define "headroom.nodeSelectorLabels" -}}
{{ include "headroom.selectorLabels" . }}
app.kubernetes.io/component: node
{{- end }}

{{/*
The selector of the pods headroom runs in, for the metrics Service and the
PodMonitor: the given selector, else the DaemonSet's pods (mode node), else
the example's pods; empty when there is none. As YAML, for fromYaml.
*/}}
{{- define "headroom.podSelector" -}}
{{- if .selector }}
{{- toYaml .selector }}
{{- else if eq .root.Values.mode "node" }}
{{- include "headroom.nodeSelectorLabels" .root }}
{{- else if .root.Values.example.enabled }}
{{- include "headroom.exampleSelectorLabels" .root }}
{{- end }}
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

or, with `nativeSidecar: true` (Kubernetes 1.29 and later), of its
`initContainers:` list: the item then carries `restartPolicy: Always`, so the
kubelet starts it before the app, restarts it, and does not wait for it to
end (a Job completes).

The pod needs `shareProcessNamespace: true`. Only `.Values` is read, so a
context of `(dict "Values" $someValues)` works too.

The target settings are `HEADROOM_*` env vars rather than flags, so that
`kubectl exec -c headroom -- headroom check` in the running container watches
the same target with no flags.
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
{{- $readiness := $v.readinessProbe | default dict -}}
- name: {{ $v.containerName | default "headroom" }}
  image: {{ printf "%s:%s" $v.image.repository (toString $v.image.tag) | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $v.nativeSidecar }}
  # A native sidecar (an init container that keeps running): started before
  # the app, restarted when it exits, and not waited for when the pod's
  # containers end.
  restartPolicy: Always
  {{- end }}
  args:
    - run
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    # What to watch and how: `headroom check` in this container reads the
    # same env, so it needs no flags.
    {{- with $t.process }}
    - name: HEADROOM_PROCESS
      value: {{ . | quote }}
    {{- end }}
    {{- with $t.pid }}
    - name: HEADROOM_PID
      value: {{ . | toString | quote }}
    {{- end }}
    {{- with $v.goUrl }}
    - name: HEADROOM_GO_URL
      value: {{ . | quote }}
    {{- end }}
    - name: HEADROOM_LIMIT_BASIS
      value: {{ $v.limitBasis | quote }}
    {{- if $v.memoryLimit }}
    - name: HEADROOM_MEMORY_LIMIT
      value: {{ $v.memoryLimit | quote }}
    {{- else if $t.memoryLimitFromPod }}
    # The watched container's memory limit, in bytes, from the downward API:
    # what headroom predicts against when it cannot read that container's
    # cgroup (no ptrace access to the target: the unprivileged mode).
    - name: HEADROOM_MEMORY_LIMIT
      valueFrom:
        resourceFieldRef:
          containerName: {{ $t.containerName | default "app" | quote }}
          resource: limits.memory
    {{- end }}
    - name: HEADROOM_LISTEN
      value: {{ printf "0.0.0.0:%d" $port | quote }}
    - name: HEADROOM_LOG_FORMAT
      value: {{ $v.logFormat | quote }}
    {{- if $v.profiles.enabled }}
    - name: HEADROOM_PROFILE_DIR
      value: /var/lib/headroom/profiles
    {{- end }}
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
    - name: HEADROOM_TARGET_CONTAINER
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
  {{- if $readiness.enabled }}
  readinessProbe:
    {{- toYaml (omit $readiness "enabled") | nindent 4 }}
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
