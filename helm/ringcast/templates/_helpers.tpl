{{/* Names, labels and the values derived from others. */}}

{{- define "ringcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringcast.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "ringcast.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "ringcast.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ringcast.headless" -}}
{{- printf "%s-headless" (include "ringcast.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ringcast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ringcast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ringcast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ringcast.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ringcast.secretName" -}}
{{- default (include "ringcast.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The cluster addresses of every pod by its stable DNS name: the gossip seeds. */}}
{{- define "ringcast.seeds" -}}
{{- $seeds := list -}}
{{- $count := int (ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled) -}}
{{- range $i := until $count -}}
{{- $seeds = append $seeds (printf "%s-%d.%s.%s.svc:%d" (include "ringcast.fullname" $) $i (include "ringcast.headless" $) $.Release.Namespace (int $.Values.ports.cluster)) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}

{{- define "ringcast.drainTimeout" -}}
{{- default 30 (index .Values.config "drain-timeout-secs") | float64 | ceil | int -}}
{{- end -}}

{{/* Grace period: must cover the preStop sleep and the drain. */}}
{{- define "ringcast.terminationGrace" -}}
{{- $needed := add (int .Values.preStopSleepSeconds) (int (include "ringcast.drainTimeout" .)) 10 -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $needed -}}
{{- else if lt (int .Values.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds %d is shorter than preStopSleepSeconds + drain-timeout-secs + 10 = %d" (int .Values.terminationGracePeriodSeconds) (int $needed)) -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "ringcast.redisEnabled" -}}
{{- if or .Values.redis.url .Values.redis.fromSecret -}}true{{- end -}}
{{- end -}}
