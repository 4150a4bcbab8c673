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

{{/* The operator's image: its Deployment, the uninstall guard and the helm test run it. */}}
{{- define "kova.operatorImage" -}}
{{ include "kova.image" (dict "root" . "name" "kova-operator" "digest" .Values.operator.image.digest) }}
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

{{/* The agent's grace period: longer than the guest shutdowns a stopping agent waits for. */}}
{{- define "kova.agentGrace" -}}
{{- $timeout := int .Values.agent.shutdownTimeoutSeconds -}}
{{- $grace := .Values.agent.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $grace -}}
{{ add $timeout 30 }}
{{- else if le (int $grace) $timeout -}}
{{ fail (printf "agent.terminationGracePeriodSeconds (%d) must be longer than agent.shutdownTimeoutSeconds (%d): the kubelet would kill an agent waiting for a guest to shut down" (int $grace) $timeout) }}
{{- else -}}
{{ int $grace }}
{{- end -}}
{{- end }}

{{/* The annotations of the uninstall guard's hook resources, at the given weight. */}}
{{- define "kova.uninstallHook" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
