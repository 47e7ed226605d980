{{/* Names and labels. */}}
{{- define "meeting-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meeting-agent.fullname" -}}
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

{{- define "meeting-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meeting-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "meeting-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "meeting-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "meeting-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meeting-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "meeting-agent.secretName" -}}
{{- default (include "meeting-agent.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "meeting-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The environment variables the agent reads a secret from (src/config.rs ENV_VARS); each is
taken from the Secret when the Secret has it.
*/}}
{{- define "meeting-agent.secretEnvNames" -}}
LIVEKIT_API_KEY LIVEKIT_API_SECRET MEETING_AGENT_DATABASE_URL MEETING_AGENT_LLM_API_KEY MEETING_AGENT_S3_ACCESS_KEY MEETING_AGENT_S3_SECRET_KEY MEETING_AGENT_SMTP_PASSWORD
{{- end }}

{{/*
TOML. Helm reads every number of a values file as a float (toToml would write `1800.0`, which
the agent's integer fields refuse), so this renders whole numbers as integers. Arguments:
(list MAP PREFIX). Keys whose value is null are left out (the agent's default applies).
*/}}
{{- define "meeting-agent.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "meeting-agent.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 $v) (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "meeting-agent.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" $v }}{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }}, {{ end }}{{ include "meeting-agent.tomlKey" $k }} = {{ include "meeting-agent.tomlValue" (index $v $k) }}{{ end }} }
{{- else }}{{ $v }}
{{- end }}
{{- end }}

{{- define "meeting-agent.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) }}true{{ end }}
{{- end }}

{{- define "meeting-agent.tomlTable" -}}
{{- $map := index . 0 }}
{{- $prefix := index . 1 }}
{{- range $k, $v := $map }}
{{- if and (not (kindIs "invalid" $v)) (not (kindIs "map" $v)) (not (include "meeting-agent.isTableArray" $v)) }}
{{ include "meeting-agent.tomlKey" $k }} = {{ include "meeting-agent.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $map }}
{{- $path := include "meeting-agent.tomlKey" $k }}
{{- if $prefix }}{{ $path = printf "%s.%s" $prefix $path }}{{ end }}
{{- if kindIs "map" $v }}

[{{ $path }}]
{{- include "meeting-agent.tomlTable" (list $v $path) }}
{{- else if include "meeting-agent.isTableArray" $v }}
{{- range $e := $v }}

[[{{ $path }}]]
{{- include "meeting-agent.tomlTable" (list $e $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The configuration file: `config` with the control API switched on and bound in the pod (the
probes and /metrics use it). API keys are appended from the Secret at start (initContainer).
*/}}
{{- define "meeting-agent.configToml" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $api := dict }}
{{- if kindIs "map" (get $cfg "api") }}{{ $api = get $cfg "api" }}{{ end }}
{{- $_ := set $api "enabled" true }}
{{- $_ := set $api "bind" (printf "0.0.0.0:%d" (int .Values.api.port)) }}
{{- $_ := unset $api "keys" }}
{{- $_ := set $cfg "api" $api }}
# Rendered by the meeting-agent chart from `config` (values.yaml); see meeting-agent.example.toml.
{{- include "meeting-agent.tomlTable" (list $cfg "") }}
{{ end }}

{{/* Render-time checks. */}}
{{- define "meeting-agent.validate" -}}
{{- $drain := int (dig "agent" "drain_timeout_secs" 1800 .Values.config) }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $margin := int .Values.drainMarginSeconds }}
{{- if le $grace (add $drain $margin) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.agent.drain_timeout_secs (%d) + drainMarginSeconds (%d): Kubernetes would kill draining meetings before the agent ends them and flushes their transcripts and recordings" $grace $drain $margin) }}
{{- end }}
{{- if not (has .Values.workload.kind (list "Deployment" "StatefulSet")) }}
{{- fail (printf "workload.kind must be Deployment or StatefulSet, not %q" .Values.workload.kind) }}
{{- end }}
{{- if and (eq .Values.workload.kind "Deployment") .Values.persistence.enabled (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "persistence with a Deployment is for one worker: workers must not share a data dir (journals, SQLite, the recording spool); use workload.kind=StatefulSet for one disk per worker" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- range .Values.secrets.apiKeys }}
{{- if lt (len (toString .key)) 24 }}
{{- fail "every secrets.apiKeys[].key needs at least 24 characters (the agent refuses shorter ones)" }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.metricsApiKey (lt (len .Values.secrets.metricsApiKey) 24) }}
{{- fail "secrets.metricsApiKey needs at least 24 characters" }}
{{- end }}
{{- end }}
{{- end }}
