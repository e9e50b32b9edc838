{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "sovereign-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: "<release>-<chart>", or "<release>" when the release name already
contains the chart name; truncated to 63 characters.
*/}}
{{- define "sovereign-operator.fullname" -}}
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

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "sovereign-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object carries.
*/}}
{{- define "sovereign-operator.labels" -}}
helm.sh/chart: {{ include "sovereign-operator.chart" . }}
{{ include "sovereign-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sovereign-operator
{{- end }}

{{/*
Labels that select the operator's pods (immutable in a Deployment: never add to them).
*/}}
{{- define "sovereign-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sovereign-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "sovereign-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sovereign-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest when a digest is set, else repository:tag (tag defaults to
the chart's appVersion).
*/}}
{{- define "sovereign-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Namespaces whose Secrets the operator reads: the release namespace first, then the extra
kubeconfigNamespaces, without duplicates.
*/}}
{{- define "sovereign-operator.secretNamespaces" -}}
{{- $all := list .Release.Namespace }}
{{- range .Values.kubeconfigNamespaces }}
{{- $all = append $all . }}
{{- end }}
{{- $all | uniq | join "," }}
{{- end }}
