{{/* Name of the release's objects. */}}
{{- define "fusionhook.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fusionhook.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fusionhook.labels" -}}
{{ include "fusionhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: fusionhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fusionhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fusionhook.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fusionhook.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The operator's permissions, kept equal to operator/src/rbac.rs by a test
(tests/tests/chart.rs): exactly the verbs it uses on exactly the resources
it touches.
*/}}
{{- define "fusionhook.watchedRules" -}}
- apiGroups: ["fusionhook.dev"]
  resources: ["fusionauthwebhooks"]
  verbs: ["get", "list", "patch", "watch"]
- apiGroups: ["fusionhook.dev"]
  resources: ["fusionauthwebhooks/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "get", "list", "patch", "watch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "delete", "list", "patch", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["delete", "list"]
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["create", "get"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["delete", "list", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "delete", "list", "patch", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["create", "delete", "list", "patch", "watch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["create", "delete", "get", "list", "patch", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
