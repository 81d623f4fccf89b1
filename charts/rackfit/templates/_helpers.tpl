{{/* Names and labels shared by every template. */}}

{{- define "rackfit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: "rackfit" for `helm install rackfit`, else "<release>-rackfit". */}}
{{- define "rackfit.fullname" -}}
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

{{- define "rackfit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rackfit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "rackfit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rackfit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rackfit
{{- end }}

{{- define "rackfit.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The webhook serving certificate's Secret (generated below, or written by cert-manager). */}}
{{- define "rackfit.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "rackfit.fullname" .) }}
{{- end }}

{{/* "true" when a monitoring kind should be rendered: enabled true, or "auto" and the API is served. */}}
{{- define "rackfit.monitoringOn" -}}
{{- $enabled := index . 0 }}{{- $api := index . 1 }}{{- $caps := index . 2 }}
{{- if or (eq (toString $enabled) "true") (and (eq (toString $enabled) "auto") ($caps.APIVersions.Has $api)) }}true{{- end }}
{{- end }}
