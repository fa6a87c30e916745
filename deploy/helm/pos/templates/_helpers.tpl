{{/* The release's base name, at most 63 characters as Kubernetes names allow. */}}
{{- define "pos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "pos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: pos
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* What selects every pod of the release (the front door). */}}
{{- define "pos.selectorLabels" -}}
app.kubernetes.io/name: pos
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* What selects the web cabinet's pods: not the front door's labels, it serves no gRPC. */}}
{{- define "pos.webSelectorLabels" -}}
app.kubernetes.io/name: pos-web
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pos.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pos.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pos.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The headless Service of one service: one DNS record per ready pod, for dns:/// peers. */}}
{{- define "pos.peerHost" -}}
{{- printf "%s-%s.%s.svc" (include "pos.fullname" .root) .name .root.Release.Namespace -}}
{{- end -}}

{{/* The gRPC health name a service reports when it is ready, e.g. pos.v1.IntakeService. */}}
{{- define "pos.healthName" -}}
{{- printf "pos.v1.%sService" (title .) -}}
{{- end -}}

{{/* Fails rendering early, with the value to set, instead of pods that cannot start. */}}
{{- define "pos.validate" -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret is required: a Secret holding the PostgreSQL URL" -}}
{{- end -}}
{{- if not .Values.amqp.existingSecret -}}
{{- fail "amqp.existingSecret is required: a Secret holding the RabbitMQ URL" -}}
{{- end -}}
{{- if and (not .Values.auth.hs256Secret.existingSecret) (not .Values.auth.publicKeys.existingSecret) (not .Values.auth.jwksUrl) -}}
{{- fail "set auth.jwksUrl or auth.publicKeys.existingSecret (production), or auth.hs256Secret.existingSecret (development)" -}}
{{- end -}}
{{- if and .Values.auth.publicKeys.existingSecret (not .Values.auth.publicKeys.files) -}}
{{- fail "auth.publicKeys.files lists the key files of auth.publicKeys.existingSecret" -}}
{{- end -}}
{{- if not .Values.regions -}}
{{- fail "regions: list [\"*\"] or at least one region code" -}}
{{- end -}}
{{- if and (not .Values.tls.existingSecret) (not .Values.tls.allowPlaintext) -}}
{{- fail "set tls.existingSecret (a kubernetes.io/tls Secret with ca.crt) or tls.allowPlaintext=true: the services listen beyond loopback" -}}
{{- end -}}
{{- end -}}

{{/* The mounted public key files, comma-separated. */}}
{{- define "pos.keyFiles" -}}
{{- $files := list -}}
{{- range .Values.auth.publicKeys.files -}}
{{- $files = append $files (printf "/etc/pos/keys/%s" .) -}}
{{- end -}}
{{- join ", " $files -}}
{{- end -}}
