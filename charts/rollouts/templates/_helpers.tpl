{{/*
The prefix of every object's name: the release name unless fullnameOverride
is set. The longest name, <prefix>-controller-metrics, must fit the 63
characters of a Service name.
*/}}
{{- define "rollouts.fullname" -}}
{{- $name := default .Release.Name .Values.fullnameOverride -}}
{{- if gt (len $name) 44 -}}
{{- fail (printf "the release name or fullnameOverride %q is longer than 44 characters: %s-controller-metrics would exceed the 63 of a Service name" $name $name) -}}
{{- end -}}
{{- $name -}}
{{- end }}

{{- define "rollouts.controllerName" -}}
{{ include "rollouts.fullname" . }}-controller
{{- end }}

{{- define "rollouts.leaderElectionName" -}}
{{ include "rollouts.fullname" . }}-leader-election
{{- end }}

{{- define "rollouts.notificationsName" -}}
{{ include "rollouts.fullname" . }}-notifications
{{- end }}

{{/*
What the Deployment, the metrics Service and the PodDisruptionBudget select on.
It is fixed, as in the kustomize install, so an install can move between
kustomize and Helm (and change fullnameOverride) without a new selector, which
a Deployment cannot change. One release per namespace.
*/}}
{{- define "rollouts.selectorLabels" -}}
app.kubernetes.io/name: rollouts-controller
{{- end }}

{{/* Helm's standard labels: never in a selector. */}}
{{- define "rollouts.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "rollouts.labels" -}}
app.kubernetes.io/part-of: rollouts
{{ include "rollouts.helmLabels" . }}
{{- end }}

{{/* Labels of the objects of the controller workload. */}}
{{- define "rollouts.workloadLabels" -}}
{{ include "rollouts.selectorLabels" . }}
{{ include "rollouts.labels" . }}
{{- end }}

{{/*
The pods' labels: podLabels, then Helm's, then the selector's, each winning
over the ones before it.
*/}}
{{- define "rollouts.podLabels" -}}
{{- $labels := merge (include "rollouts.selectorLabels" . | fromYaml) (include "rollouts.helmLabels" . | fromYaml) .Values.podLabels -}}
{{- toYaml $labels -}}
{{- end }}

{{/*
repository:tag, or repository@digest when a digest is set without a tag (the
form the release's install.yaml uses), or repository:tag@digest with both.
*/}}
{{- define "rollouts.image" -}}
{{- $img := .Values.image -}}
{{- if and $img.digest (not $img.tag) -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default .Chart.AppVersion }}{{ with $img.digest }}@{{ . }}{{ end }}
{{- end -}}
{{- end }}

{{/*
The controller's arguments: first the kustomize Deployment's, in its order,
then one flag per value that is set, then extraArgs. Values equal to the
controller's defaults (logLevel info, logFormat json, null) render nothing.
*/}}
{{- define "rollouts.args" -}}
{{- $c := .Values.controller -}}
{{- if .Values.leaderElection.enabled }}
- --leader-elect
- --leader-election-namespace=$(POD_NAMESPACE)
{{- end }}
- --metrics-bind-address=:8090
- --health-probe-bind-address=:8091
- --graceful-shutdown-timeout=30s
{{- with .Values.watchNamespace }}
- --namespace={{ . }}
{{- end }}
{{- if not .Values.metrics.secure }}
- --metrics-secure=false
{{- end }}
{{- if ne (toString .Values.logLevel) "info" }}
- --zap-log-level={{ .Values.logLevel }}
{{- end }}
{{- if eq .Values.logFormat "console" }}
- --zap-encoder=console
{{- end }}
{{- with $c.rolloutWorkers }}
- --rollout-workers={{ int . }}
{{- end }}
{{- with $c.analysisWorkers }}
- --analysis-workers={{ int . }}
{{- end }}
{{- with $c.experimentWorkers }}
- --experiment-workers={{ int . }}
{{- end }}
{{- with $c.kubeAPIQPS }}
- --kube-api-qps={{ . }}
{{- end }}
{{- with $c.kubeAPIBurst }}
- --kube-api-burst={{ int . }}
{{- end }}
{{- with $c.prometheusAddress }}
- {{ printf "--prometheus-address=%s" . | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
A generated rule list of files/ (hack/genrbac), refusing to grant nothing when
the file is missing from the chart. Call with (dict "ctx" $ "file" PATH).
*/}}
{{- define "rollouts.rules" -}}
{{- $rules := .ctx.Files.Get .file | fromYamlArray -}}
{{- if not $rules -}}
{{- fail (printf "chart file %s is missing or empty: run make generate" .file) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end }}

{{/*
The metrics Service's port name and scheme: https unless metrics.secure is
false.
*/}}
{{- define "rollouts.metricsScheme" -}}
{{ ternary "https" "http" .Values.metrics.secure }}
{{- end }}
