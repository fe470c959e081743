{{- define "regmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "regmirror.labels" -}}
app.kubernetes.io/name: {{ include "regmirror.name" . }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "regmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
