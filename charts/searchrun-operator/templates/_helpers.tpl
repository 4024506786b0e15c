{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "searchrun-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "searchrun-operator.fullname" -}}
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

{{- define "searchrun-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "searchrun-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "searchrun-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "searchrun-operator.labels" -}}
helm.sh/chart: {{ include "searchrun-operator.chart" . }}
{{ include "searchrun-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: searchrun
{{- end -}}

{{- define "searchrun-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "searchrun-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "searchrun-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* "true" when the operator watches every namespace or namespace patterns (globs). */}}
{{- define "searchrun-operator.clusterScoped" -}}
{{- $scoped := not .Values.watchNamespaces -}}
{{- range .Values.watchNamespaces -}}
{{- if regexMatch "[*?\\[\\]!]" . -}}{{- $scoped = true -}}{{- end -}}
{{- end -}}
{{- if $scoped -}}true{{- end -}}
{{- end -}}

{{/* The step ServiceAccount's name, or "" when step pods use their namespace's default. */}}
{{- define "searchrun-operator.stepServiceAccountName" -}}
{{- $name := default (printf "%s-step" (include "searchrun-operator.fullname" .)) .Values.stepServiceAccount.name -}}
{{- if .Values.stepServiceAccount.create -}}
{{- if not (include "searchrun-operator.clusterScoped" .) -}}{{ $name }}{{- end -}}
{{- else if .Values.stepServiceAccount.name -}}
{{- .Values.stepServiceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "searchrun-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "searchrun-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "searchrun-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "searchrun-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "searchrun-operator.certificateName" -}}
{{- printf "%s-webhook" (include "searchrun-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* DNS names of the webhook Service (the API server checks the certificate against <svc>.<ns>.svc). */}}
{{- define "searchrun-operator.webhookDNSNames" -}}
{{- $svc := include "searchrun-operator.webhookServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/* The operator's configuration file (OperatorConfig: only its field names). */}}
{{- define "searchrun-operator.config" -}}
artifacts: {{ .Values.artifacts.uri | quote }}
{{- with (default .Values.s3.endpointURL .Values.s3.stepEndpointURL) }}
stepS3EndpointURL: {{ . | quote }}
{{- end }}
stepS3Region: {{ .Values.s3.region | quote }}
stepS3Secret: {{ if .Values.s3.existingSecret }}{{ .Values.s3.existingSecret | quote }}{{ else }}null{{ end }}
{{- with .Values.operator.stepJobManagedBy }}
stepJobManagedBy: {{ . | quote }}
{{- end }}
{{- with .Values.operator.stepImage }}
stepImage: {{ . | quote }}
{{- end }}
{{- if or .Values.operator.stepPodTemplate.nodeSelector .Values.operator.stepPodTemplate.tolerations }}
stepPodTemplate:
  nodeSelector: {{ .Values.operator.stepPodTemplate.nodeSelector | default dict | toJson }}
  tolerations: {{ .Values.operator.stepPodTemplate.tolerations | default list | toJson }}
{{- end }}
{{- with (include "searchrun-operator.stepServiceAccountName" .) }}
stepServiceAccount: {{ . | quote }}
{{- end }}
lineageOffloadBytes: {{ .Values.operator.lineageOffloadBytes | toJson }}
resyncSeconds: {{ .Values.operator.resyncSeconds | toJson }}
resultWaitSeconds: {{ .Values.operator.resultWaitSeconds | toJson }}
metricsPort: {{ .Values.metrics.port | toJson }}
metricsAddr: "0.0.0.0"
webhooks: {{ .Values.webhook.enabled }}
webhookPort: {{ .Values.webhook.port | toJson }}
webhookAddr: "0.0.0.0"
webhookCertDir: /tls
webhookManaged: false
policy:
  mode: {{ .Values.policy.mode | quote }}
  clamp: {{ .Values.policy.clamp | toJson }}
  {{- /* whole: its fields are the schema's, which hack/gen-chart-budgets.py writes from api.Budget */}}
  caps: {{ .Values.policy.caps | toJson }}
  corpusSchemes: {{ .Values.policy.corpusSchemes | toJson }}
  allowOpenAI: {{ .Values.policy.allowOpenAI }}
  {{- with .Values.policy.agentEndpoints }}
  agentEndpoints:
    allow: {{ .allow | default list | toJson }}
    cidrs: {{ .cidrs | default list | toJson }}
    serviceCIDRs: {{ .serviceCIDRs | default list | toJson }}
    podCIDRs: {{ .podCIDRs | default list | toJson }}
  {{- end }}
{{- end -}}

{{/* RBAC rules (templates/rbac.yaml). */}}
{{- define "searchrun-operator.rules.namespaced" }}
# SearchRuns: kopf lists and watches them, adds its finalizer and annotations (patch);
# the reconciler reads one (get) and writes its lineage to the status.
- apiGroups: ["searchrun.dev"]
  resources: ["searchruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["searchrun.dev"]
  resources: ["searchruns/status"]
  verbs: ["get", "patch"]
# One Job per step: created, then followed through one label-selected watch.
# (Jobs and their pods go away with their SearchRun through owner references.)
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch"]
# The error a failed step left in its pod's termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
# Events on SearchRuns (kopf's poster).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
{{- define "searchrun-operator.rules.cluster" }}
# kopf observes CustomResourceDefinitions (to notice its resources appear or go).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf lists and watches namespaces whenever it is given namespaces (names or patterns),
# to know which of them exist; cluster-wide it doesn't.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/* The part both admission webhooks share (templates/webhook.yaml). */}}
{{- define "searchrun-operator.webhookCommon" }}
    sideEffects: None
    failurePolicy: {{ .root.Values.webhook.failurePolicy }}
    matchPolicy: Equivalent
    timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
    admissionReviewVersions: ["v1"]
    {{- if not (include "searchrun-operator.clusterScoped" .root) }}
    # Only the namespaces this operator watches: a SearchRun elsewhere is not ours to judge.
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: In
          values: {{ .root.Values.watchNamespaces | toJson }}
    {{- end }}
    clientConfig:
      {{- if .caBundle }}
      caBundle: {{ .caBundle }}
      {{- end }}
      service:
        name: {{ include "searchrun-operator.webhookServiceName" .root }}
        namespace: {{ .root.Release.Namespace }}
        port: 443
        path: {{ .path }}
{{- end }}
