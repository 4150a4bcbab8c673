{{- define "kova.labels" -}}
app.kubernetes.io/name: kova
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "kova.selector" -}}
app.kubernetes.io/name: kova
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image by digest when one is set (name@sha256:...), else by tag. */}}
{{- define "kova.image" -}}
{{- $repository := printf "%s/%s" .root.Values.image.registry .name -}}
{{- with .digest -}}
{{ $repository }}@{{ . }}
{{- else -}}
{{ $repository }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
Values added since the first chart are read with dig, default or with: `helm upgrade
--reuse-values` renders with the previous release's values in place of this chart's
values.yaml, where they are missing. A missing one renders as this chart's default where the
pods need a value (health port, grace period, update strategy, the uninstall guard), and as
nothing where it only adds (placement, pod metadata, pull secrets, digests).
*/}}

{{/* The operator's image: its Deployment, the uninstall guard and the helm test run it. */}}
{{- define "kova.operatorImage" -}}
{{ include "kova.image" (dict "root" . "name" "kova-operator" "digest" (dig "image" "digest" "" .Values.operator)) }}
{{- end }}

{{/* A pod template's metadata: the component's selector labels (never overridden) and podLabels, podAnnotations. */}}
{{- define "kova.podMetadata" -}}
{{- $selector := include "kova.selector" (dict "root" .root "component" .component) | fromYaml }}
labels: {{- merge $selector (.values.podLabels | default dict) | toYaml | nindent 2 }}
{{- with .values.podAnnotations }}
annotations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Where a component's pods run, and the pull secrets, from its values (operator or agent). */}}
{{- define "kova.podPlacement" -}}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod Security "restricted", for every pod of the operator image (pod, then container level). */}}
{{- define "kova.restrictedPodSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
seccompProfile: { type: RuntimeDefault }
{{- end }}

{{- define "kova.restrictedContainerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: { drop: [ALL] }
{{- end }}

{{/*
The annotations of a hook's resources (the uninstall guard's, the helm test's): .hook, at
.weight, so its ServiceAccount and rights exist before its pod. A failed one is kept to be
read, and replaced by the next run.
*/}}
{{- define "kova.hook" -}}
helm.sh/hook: {{ .hook }}
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* The agent's health and metrics port: the container's, the probes' and the Service's. */}}
{{- define "kova.agentHealthPort" -}}
{{ dig "healthPort" 8081 .Values.agent }}
{{- end }}

{{/* "true" when the uninstall guard is on (uninstall.blockIfInstancesExist), else empty. */}}
{{- define "kova.uninstallGuard" -}}
{{- if dig "blockIfInstancesExist" true (.Values.uninstall | default dict) }}true{{ end -}}
{{- end }}
