{{/* Names, labels and the values several templates share. */}}

{{- define "jvm-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jvm-guard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "jvm-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jvm-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jvm-guard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "jvm-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "jvm-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jvm-guard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The webhook image; also the tools init container's image unless server.toolsImage is set. */}}
{{- define "jvm-guard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "jvm-guard.toolsImage" -}}
{{- default (include "jvm-guard.image" .) .Values.server.toolsImage -}}
{{- end -}}

{{/* The Secret holding tls.crt and tls.key (and ca.crt, except maybe in existing mode). */}}
{{- define "jvm-guard.tlsSecretName" -}}
{{- if eq .Values.certs.mode "existing" -}}
{{- required "certs.existing.secretName is required with certs.mode=existing" .Values.certs.existing.secretName -}}
{{- else -}}
{{- printf "%s-tls" (include "jvm-guard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The DNS names the apiserver may use for the Service; the apiserver uses <svc>.<ns>.svc. */}}
{{- define "jvm-guard.dnsNames" -}}
{{- $svc := include "jvm-guard.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}
