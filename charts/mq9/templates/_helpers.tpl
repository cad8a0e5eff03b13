{{/*
The operator's name: every object of the release is named after it (cluster-scoped ones too,
so one release per cluster).
*/}}
{{- define "mq9.fullname" -}}
{{- default "mq9-operator" .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "mq9.selectorLabels" -}}
app.kubernetes.io/name: mq9-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mq9.labels" -}}
{{ include "mq9.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mq9
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* repository@digest when a digest is given, else repository:tag (default: appVersion). */}}
{{- define "mq9.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "mq9.webhookService" -}}
{{ include "mq9.fullname" . }}-webhook
{{- end -}}
