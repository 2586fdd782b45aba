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
The label every pod that runs the headroom sidecar carries, so that one
PodMonitor (mode cluster) finds them all, in every namespace. Put it in your
pod template's labels:

  template:
    metadata:
      labels:
        app: checkout
        {{- include "headroom.podLabels" . | nindent 8 }}
*/}}
{{- define "headroom.podLabels" -}}
headroom.dev/sidecar: "true"
{{- end }}

{{/*
The selector of the pods headroom runs in, for the metrics Service, the
PodMonitor and the NetworkPolicy: the given selector, else the DaemonSet's
pods (mode node), else every sidecar's pods (mode cluster), else the
example's pods; empty when there is none. As YAML, for fromYaml.
*/}}
{{- define "headroom.podSelector" -}}
{{- if .selector }}
{{- toYaml .selector }}
{{- else if eq .root.Values.mode "node" }}
{{- include "headroom.nodeSelectorLabels" .root }}
{{- else if eq .root.Values.mode "cluster" }}
{{- include "headroom.podLabels" .root }}
{{- else if .root.Values.example.enabled }}
{{- include "headroom.exampleSelectorLabels" .root }}
{{- end }}
{{- end }}

{{/*
Whether a switch that may be left unset is on: its value when it is true or
false, else (null) on in mode cluster only. "true" or "". Takes (dict "root"
$ "value" .Values.x.enabled).
*/}}
{{- define "headroom.enabled" -}}
{{- if kindIs "bool" .value }}
{{- if .value }}true{{ end }}
{{- else if kindIs "invalid" .value }}
{{- if eq .root.Values.mode "cluster" }}true{{ end }}
{{- else }}
{{- fail (printf "an enabled switch must be true, false or null, not %q" (toString .value)) }}
{{- end }}
{{- end }}

{{/*
The mode, checked, and what each mode must not be asked for. Included by
every template, so a wrong combination fails whichever renders first.
*/}}
{{- define "headroom.checkMode" -}}
{{- $v := .Values }}
{{- if not (has $v.mode (list "sidecar" "node" "cluster")) }}
{{- fail (printf "mode must be sidecar, node or cluster, not %q" (toString $v.mode)) }}
{{- end }}
{{- if eq $v.mode "sidecar" }}
{{- if include "headroom.enabled" (dict "root" . "value" $v.prometheusRule.enabled) }}
{{- fail "prometheusRule.enabled: the alerting rules are installed once per cluster, not with each workload. Install them with a release of mode: cluster (or mode: node), and set prometheusRule.enabled=false here" }}
{{- end }}
{{- if include "headroom.enabled" (dict "root" . "value" $v.grafanaDashboard.enabled) }}
{{- fail "grafanaDashboard.enabled: the dashboard is installed once per cluster, not with each workload. Install it with a release of mode: cluster (or mode: node), and set grafanaDashboard.enabled=false here" }}
{{- end }}
{{- end }}
{{- if ne $v.mode "sidecar" }}
{{- if $v.example.enabled }}
{{- fail (printf "example.enabled is the sidecar's example: leave it off with mode: %s" $v.mode) }}
{{- end }}
{{- end }}
{{- if eq $v.mode "cluster" }}
{{- if or $v.service.enabled $v.serviceMonitor.enabled }}
{{- fail "service.enabled, serviceMonitor.enabled: mode cluster scrapes every sidecar with one PodMonitor (podMonitor.*), through no Service: leave them off" }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
{{- fail "networkPolicy.enabled: a NetworkPolicy applies to the pods of its own namespace; set it in each workload's release (mode: sidecar) or in mode: node, not in mode: cluster" }}
{{- end }}
{{- end }}
{{- if and $v.auth.metrics (not $v.auth.existingSecret) }}
{{- fail "auth.metrics: set auth.existingSecret, the Secret whose credentials headroom requires and the monitors send" }}
{{- end }}
{{- end }}

{{/*
The headroom release this chart is made for: the appVersion of this chart,
also when the sidecar's template is included from a chart that depends on
this one (whose own .Chart is its own). Empty when the context has no chart.
*/}}
{{- define "headroom.appVersion" -}}
{{- if and (kindIs "map" .Values.headroom) .Subcharts (hasKey .Subcharts "headroom") }}
{{- (index .Subcharts "headroom").Chart.AppVersion }}
{{- else if .Chart }}
{{- .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/*
The image: [registry/]repository@digest when a digest is given, else
[registry/]repository:tag, the tag defaulting to the chart's appVersion.
Takes (dict "image" $values.image "appVersion" VERSION).
*/}}
{{- define "headroom.image" -}}
{{- $img := .image }}
{{- $repo := $img.repository }}
{{- with $img.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- $tag := toString ($img.tag | default .appVersion) }}
{{- if not $tag }}
{{- fail "image.tag: set it, or image.digest (the context the template was included with has no chart to take the appVersion from)" }}
{{- end }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/*
The pull secrets, as items of a pod's `imagePullSecrets:` list (nothing
when there is none):

  {{- with include "headroom.imagePullSecrets" . }}
  imagePullSecrets:
    {{- . | nindent 4 }}
  {{- end }}
*/}}
{{- define "headroom.imagePullSecrets" -}}
{{- $v := include "headroom.sidecarValues" . | fromYaml }}
{{- with $v.imagePullSecrets }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Merges the map .src into the map .dst in place: nested maps merge, any other
value replaces the one in .dst (false and 0 too), and null removes the key.
*/}}
{{- define "headroom.mergeInto" -}}
{{- $dst := .dst }}
{{- range $k, $v := .src }}
{{- if kindIs "invalid" $v }}
{{- $_ := unset $dst $k }}
{{- else if and (kindIs "map" $v) (kindIs "map" (index $dst $k)) }}
{{- include "headroom.mergeInto" (dict "dst" (index $dst $k) "src" $v) }}
{{- else }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where the auth Secret's file is mounted, and its path, for --auth-file.
*/}}
{{- define "headroom.authDir" -}}
/etc/headroom/auth
{{- end }}

{{- define "headroom.authFile" -}}
{{ include "headroom.authDir" . }}/{{ .Values.auth.key }}
{{- end }}

{{/*
The volume of the auth Secret (when auth.existingSecret is set), as one item
of a pod's `volumes:` list. A whole-directory mount, not a subPath: the
kubelet then updates the file when the Secret changes, and headroom reads it
again.
*/}}
{{- define "headroom.authVolume" -}}
{{- with .Values.auth.existingSecret -}}
- name: headroom-auth
  secret:
    secretName: {{ . | quote }}
    items:
      - key: {{ $.Values.auth.key | quote }}
        path: {{ $.Values.auth.key | quote }}
{{- end }}
{{- end }}

{{- define "headroom.authVolumeMount" -}}
{{- if .Values.auth.existingSecret -}}
- name: headroom-auth
  mountPath: {{ include "headroom.authDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
One scrape endpoint of a PodMonitor or ServiceMonitor, the same in every
mode. Takes (dict "root" $ "monitor" .Values.podMonitor "relabelings" LIST).

- honorLabels: headroom's series name the watched container (namespace, pod,
  container); without it Prometheus renames them exported_*.
- The Operator's `container` target label is dropped: it names headroom's
  own container, and would stand as the target's on a series that carries
  none (as deploy/prometheus/scrape-config.yaml does not add it either).
- With auth.metrics, the credentials of auth.existingSecret.
*/}}
{{- define "headroom.monitorEndpoint" -}}
{{- $root := .root }}
{{- $m := .monitor }}
{{- $auth := $root.Values.auth -}}
port: metrics
path: /metrics
honorLabels: true
interval: {{ $m.interval }}
scrapeTimeout: {{ $m.scrapeTimeout }}
{{- if $auth.metrics }}
{{- if eq $auth.type "basic" }}
basicAuth:
  username:
    name: {{ $auth.existingSecret | quote }}
    key: {{ $auth.usernameKey | quote }}
  password:
    name: {{ $auth.existingSecret | quote }}
    key: {{ $auth.passwordKey | quote }}
{{- else }}
authorization:
  type: Bearer
  credentials:
    name: {{ $auth.existingSecret | quote }}
    key: {{ $auth.key | quote }}
{{- end }}
{{- end }}
relabelings:
  {{- with .relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  - action: labeldrop
    regex: container
  {{- with $m.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $m.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Fails unless the job the Prometheus Operator gives a monitor's targets
contains "headroom", which the HeadroomDown alert (up{job=~".*headroom.*"})
needs. Without a jobLabel the job is NAMESPACE/NAME for a PodMonitor, the
Service's name for a ServiceMonitor; a jobLabel, or a relabeling of job,
is the user's to get right. Takes (dict "job" JOB "what" DESCRIPTION
"monitor" VALUES).
*/}}
{{- define "headroom.checkJob" -}}
{{- $relabelsJob := false }}
{{- range .monitor.relabelings }}
{{- if eq (toString .targetLabel) "job" }}{{ $relabelsJob = true }}{{ end }}
{{- end }}
{{- if and (not .monitor.jobLabel) (not $relabelsJob) (not (regexMatch "headroom" .job)) }}
{{- fail (printf `%s: its job would be %q, which the HeadroomDown alert (up{job=~".*headroom.*"}) does not match. Keep "headroom" in the release's name (or nameOverride, fullnameOverride) or namespace, or name the job with a relabeling` .what .job) }}
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

The pod needs `shareProcessNamespace: true`, the label of "headroom.podLabels"
(for the PodMonitor of mode cluster), and the volumes of "headroom.volumes".
Only `.Values` is read (and `.Capabilities`, `.Chart` where there are), so a
context of `(dict "Values" $someValues)` works too: set image.tag then.

The target settings are `HEADROOM_*` env vars rather than flags, so that
`kubectl exec -c headroom -- headroom check` in the running container watches
the same target with no flags.
*/}}
{{- define "headroom.container" -}}
{{- $v := include "headroom.sidecarValues" . | fromYaml }}
{{- $t := $v.target | default dict }}
{{- $auth := $v.auth | default dict }}
{{- if not (or $t.process $t.pid) }}
{{- fail "headroom: set target.process (the Go process's name) or target.pid" }}
{{- end }}
{{- if not (has $v.procAccess (list "sameUser" "sysPtrace")) }}
{{- fail (printf "headroom: procAccess must be sameUser or sysPtrace, not %q" (toString $v.procAccess)) }}
{{- end }}
{{- if and $v.nativeSidecar .Capabilities }}
{{- if not (semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "headroom: nativeSidecar needs Kubernetes 1.29 or later (restartPolicy on an init container), and this cluster is %s: set nativeSidecar=false and include headroom.container under containers:" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}
{{- if and $auth.metrics (not $auth.existingSecret) }}
{{- fail "headroom: auth.metrics needs auth.existingSecret, the Secret whose credentials headroom requires" }}
{{- end }}
{{- $port := int $v.port -}}
{{- $readiness := $v.readinessProbe | default dict -}}
{{- $sc := include "headroom.sidecarSecurityContext" $v | fromYaml -}}
{{- include "headroom.mergeInto" (dict "dst" $sc "src" ($v.securityContext | default dict)) -}}
- name: {{ $v.containerName | default "headroom" }}
  image: {{ include "headroom.image" (dict "image" $v.image "appVersion" (include "headroom.appVersion" .)) | quote }}
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
    {{- if $auth.existingSecret }}
    # The credentials that /, /api/... and /profiles/... require (and
    # /metrics with HEADROOM_AUTH_METRICS), from the Secret mounted below;
    # read again when the kubelet updates it. /healthz and /readyz stay open.
    - name: HEADROOM_AUTH_FILE
      value: {{ printf "%s/%s" (include "headroom.authDir" .) $auth.key | quote }}
    - name: HEADROOM_AUTH_METRICS
      value: {{ ternary "true" "false" (eq (toString $auth.metrics) "true") | quote }}
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
  {{- with $v.envFrom }}
  envFrom:
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
  {{- if eq $v.procAccess "sysPtrace" }}
  # Root with CAP_SYS_PTRACE alone: ptrace-read access to a target of
  # another UID, or to a root target (whose capabilities exceed ours).
  {{- else }}
  # Same UID and GID as the target: ptrace-read access without capabilities.
  {{- end }}
  {{- with $v.securityContext }}
  # securityContext from the values, merged over that.
  {{- end }}
  securityContext:
    {{- toYaml $sc | nindent 4 }}
  {{- $mounts := list }}
  {{- if $v.profiles.enabled }}
  {{- $mounts = append $mounts (dict "name" "headroom-profiles" "mountPath" "/var/lib/headroom/profiles") }}
  {{- end }}
  {{- with include "headroom.authVolumeMount" (dict "Values" $v) | fromYamlArray }}
  {{- $mounts = concat $mounts . }}
  {{- end }}
  {{- $mounts = concat $mounts ($v.extraVolumeMounts | default list) }}
  {{- with $mounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
The sidecar's securityContext before the `securityContext` value is merged
over it, as YAML. Takes the sidecar's values.

sysPtrace: root with CAP_SYS_PTRACE alone, for ptrace-read access to a
target of another UID, or to a root target (whose capabilities exceed
ours). sameUser: the target's UID and GID, which give ptrace-read access
without any capability.
*/}}
{{- define "headroom.sidecarSecurityContext" -}}
{{- if eq .procAccess "sysPtrace" }}
runAsUser: 0
runAsNonRoot: false
{{- else }}
runAsNonRoot: true
{{- with .runAsUser }}
runAsUser: {{ int . }}
{{- end }}
{{- with .runAsGroup }}
runAsGroup: {{ int . }}
{{- end }}
{{- end }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
  {{- if eq .procAccess "sysPtrace" }}
  add:
    - SYS_PTRACE
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The sidecar's volumes, as items of a pod's `volumes:` list: the profiles'
emptyDir (profiles.enabled), the auth Secret (auth.existingSecret) and
extraVolumes; nothing when there is none:

  {{- with include "headroom.volumes" . }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
*/}}
{{- define "headroom.volumes" -}}
{{- $v := include "headroom.sidecarValues" . | fromYaml }}
{{- $volumes := list }}
{{- if $v.profiles.enabled }}
{{- $volumes = append $volumes (dict "name" "headroom-profiles" "emptyDir" (dict "sizeLimit" $v.profiles.sizeLimit)) }}
{{- end }}
{{- with include "headroom.authVolume" (dict "Values" $v) | fromYamlArray }}
{{- $volumes = concat $volumes . }}
{{- end }}
{{- $volumes = concat $volumes ($v.extraVolumes | default list) }}
{{- with $volumes }}
{{- toYaml . }}
{{- end }}
{{- end }}
