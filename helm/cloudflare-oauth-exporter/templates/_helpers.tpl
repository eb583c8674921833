{{/*
Names and labels, in the shape every prometheus-community chart uses.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "cloudflare-oauth-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource. Kubernetes names (and label values) stop at 63 characters; a
release name that already contains the chart name is not repeated.
*/}}
{{- define "cloudflare-oauth-exporter.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "cloudflare-oauth-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "cloudflare-oauth-exporter.labels" -}}
helm.sh/chart: {{ include "cloudflare-oauth-exporter.chart" . }}
{{ include "cloudflare-oauth-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "cloudflare-oauth-exporter.name" . }}
{{- end }}

{{/*
Selector labels. Selectors are immutable, so nothing here may change between upgrades: no chart
version, no app version.
*/}}
{{- define "cloudflare-oauth-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudflare-oauth-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pod runs as. */}}
{{- define "cloudflare-oauth-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cloudflare-oauth-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: registry (if any), repository, then a digest that pins it, else the tag,
else the chart's appVersion.
*/}}
{{- define "cloudflare-oauth-exporter.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Credentials.

The exporter takes an API token, or the legacy account email + Global API key. Either secret
comes from a Secret the chart renders (cloudflare.apiToken / cloudflare.apiKey) or from one the
user manages (cloudflare.existingSecret). The secret reaches the container only as a file from a
Secret volume, pointed to by CLOUDFLARE_API_TOKEN_FILE / CLOUDFLARE_API_KEY_FILE, so its value
never appears in the pod spec.

"cloudflare-oauth-exporter.authScheme" validates the combination and prints "token" or
"globalKey"; every template that depends on the credentials calls it, so a bad combination fails
the render with a message naming the values to set.
*/}}
{{- define "cloudflare-oauth-exporter.authScheme" -}}
{{- $cf := .Values.cloudflare }}
{{- if and .Values.sharding.enabled .Values.sharding.existingSecrets }}
{{- if ne (len .Values.sharding.existingSecrets) (int .Values.replicas) }}
{{- fail (printf "cloudflare-oauth-exporter: sharding.existingSecrets lists %d Secrets but replicas is %d; give exactly one Secret per shard, or none to share cloudflare.* credentials" (len .Values.sharding.existingSecrets) (int .Values.replicas)) }}
{{- end }}
{{- if or $cf.apiToken $cf.apiEmail $cf.apiKey $cf.existingSecret.name }}
{{- fail "cloudflare-oauth-exporter: sharding.existingSecrets gives each shard its own token; leave cloudflare.apiToken, cloudflare.apiEmail, cloudflare.apiKey and cloudflare.existingSecret.name empty" }}
{{- end }}
{{- print "shardTokens" }}
{{- else }}
{{- $existing := $cf.existingSecret.name }}
{{- $hasKeyPart := or $cf.apiEmail $cf.apiKey }}
{{- if and $cf.apiToken $cf.apiKey }}
{{- fail "cloudflare-oauth-exporter: both an API token (cloudflare.apiToken) and a Global API key (cloudflare.apiKey) are set; keep only the token (recommended) or only the email and key" }}
{{- end }}
{{- if and $cf.apiToken $cf.apiEmail }}
{{- fail "cloudflare-oauth-exporter: cloudflare.apiToken and cloudflare.apiEmail are both set, but the email only goes with a Global API key; unset cloudflare.apiEmail" }}
{{- end }}
{{- if and $cf.apiToken $existing }}
{{- fail "cloudflare-oauth-exporter: cloudflare.apiToken and cloudflare.existingSecret.name are both set; give the token inline or point to an existing Secret, not both" }}
{{- end }}
{{- if and $cf.apiKey $existing }}
{{- fail "cloudflare-oauth-exporter: cloudflare.apiKey and cloudflare.existingSecret.name are both set; give the Global API key inline or point to an existing Secret, not both" }}
{{- end }}
{{- if $hasKeyPart }}
{{- if not $cf.apiEmail }}
{{- fail "cloudflare-oauth-exporter: cloudflare.apiKey is set but cloudflare.apiEmail is not; the Global API key needs the account email too (or use cloudflare.apiToken instead)" }}
{{- end }}
{{- if not (or $cf.apiKey $existing) }}
{{- fail "cloudflare-oauth-exporter: cloudflare.apiEmail is set but no Global API key is; set cloudflare.apiKey, or cloudflare.existingSecret.name (with cloudflare.existingSecret.apiKeyKey), or use an API token instead" }}
{{- end }}
{{- if and $existing (not $cf.existingSecret.apiKeyKey) }}
{{- fail "cloudflare-oauth-exporter: cloudflare.existingSecret.apiKeyKey is empty; name the key of the Secret that holds the Global API key" }}
{{- end }}
{{- print "globalKey" }}
{{- else if or $cf.apiToken $existing }}
{{- if and $existing (not $cf.existingSecret.key) }}
{{- fail "cloudflare-oauth-exporter: cloudflare.existingSecret.key is empty; name the key of the Secret that holds the API token" }}
{{- end }}
{{- print "token" }}
{{- else }}
{{- fail "cloudflare-oauth-exporter: no Cloudflare credentials. Set cloudflare.apiToken to an API token with the \"OAuth Client Read\" permission, or cloudflare.existingSecret.name (and cloudflare.existingSecret.key) to a Secret that holds one. Legacy Global API key: cloudflare.apiEmail with cloudflare.apiKey or cloudflare.existingSecret.name." }}
{{- end }}
{{- end }}
{{- end }}

{{/* Non-empty when the chart renders the credential Secret itself (inline credentials). */}}
{{- define "cloudflare-oauth-exporter.rendersSecret" -}}
{{- if not (or .Values.cloudflare.existingSecret.name (and .Values.sharding.enabled .Values.sharding.existingSecrets)) }}true{{ end }}
{{- end }}

{{/* Name of the Secret holding the credential: the user's, else the one this chart renders. */}}
{{- define "cloudflare-oauth-exporter.secretName" -}}
{{- default (include "cloudflare-oauth-exporter.fullname" .) .Values.cloudflare.existingSecret.name }}
{{- end }}

{{/*
Key of that Secret holding the credential in use. The chart's own Secret uses the same default
key names as existingSecret, so both paths mount alike.
*/}}
{{- define "cloudflare-oauth-exporter.secretKey" -}}
{{- $scheme := include "cloudflare-oauth-exporter.authScheme" . }}
{{- $existing := .Values.cloudflare.existingSecret }}
{{- if eq $scheme "token" }}
{{- ternary $existing.key "api-token" (not (empty $existing.name)) }}
{{- else }}
{{- ternary $existing.apiKeyKey "api-key" (not (empty $existing.name)) }}
{{- end }}
{{- end }}

{{/* Where the Secret volume is mounted; the credential file is the one file inside. */}}
{{- define "cloudflare-oauth-exporter.secretMountPath" -}}
/etc/cloudflare-oauth-exporter/secrets
{{- end }}

{{/*
The exporter's flags, as a YAML list: toYaml quotes what needs quoting, so an extra argument
holding ": " or "#" cannot break the manifest.
*/}}
{{- define "cloudflare-oauth-exporter.args" -}}
{{- $cf := .Values.cloudflare }}
{{- $args := list }}
{{- range $cf.accountIds }}
{{- $args = append $args (printf "--cloudflare.account-id=%s" .) }}
{{- end }}
{{- with $cf.apiUrl }}
{{- $args = append $args (printf "--cloudflare.api-url=%s" .) }}
{{- end }}
{{- $args = append $args (printf "--refresh.interval=%s" .Values.refreshInterval) }}
{{- $args = append $args (printf "--cloudflare.concurrency=%d" (int $cf.concurrency)) }}
{{- $rateLimit := int $cf.rateLimit }}
{{- if and .Values.sharding.enabled (not .Values.sharding.existingSecrets) $rateLimit }}
{{- /* Shards that share one token share its budget: each gets its part. */}}
{{- $rateLimit = max 1 (div $rateLimit (int .Values.replicas)) }}
{{- end }}
{{- $args = append $args (printf "--cloudflare.rate-limit=%d" $rateLimit) }}
{{- $args = append $args (printf "--cloudflare.timeout=%s" $cf.timeout) }}
{{- $args = append $args (printf "--cloudflare.page-size=%d" (int $cf.pageSize)) }}
{{- if .Values.sharding.enabled }}
{{- /* The shard itself comes from EXPORTER_SHARD, which differs per pod. */}}
{{- $args = append $args (printf "--total-shards=%d" (int .Values.replicas)) }}
{{- end }}
{{- if .Values.metrics.perClient }}
{{- $args = append $args "--metrics.per-client" }}
{{- $args = append $args (printf "--metrics.per-client-limit=%d" (int .Values.metrics.perClientLimit)) }}
{{- end }}
{{- with .Values.metrics.allowlist }}
{{- $args = append $args (printf "--metrics.allowlist=%s" (join "," .)) }}
{{- end }}
{{- with .Values.metrics.denylist }}
{{- $args = append $args (printf "--metrics.denylist=%s" (join "," .)) }}
{{- end }}
{{- if include "cloudflare-oauth-exporter.webConfigSecret" . }}
{{- $args = append $args "--web.config.file=/etc/cloudflare-oauth-exporter/web/web-config.yml" }}
{{- end }}
{{- $args = append $args (printf "--web.telemetry-path=%s" .Values.web.telemetryPath) }}
{{- with .Values.web.maxConnections }}
{{- $args = append $args (printf "--web.max-connections=%d" (int .)) }}
{{- end }}
{{- $args = append $args (printf "--log.level=%s" .Values.logLevel) }}
{{- $args = append $args (printf "--log.format=%s" .Values.logFormat) }}
{{- concat $args .Values.extraArgs | toYaml }}
{{- end }}

{{/*
The path the exporter serves its metrics on: web.telemetryPath, unless extraArgs set
--web.telemetry-path again (the last flag wins, in the exporter as here). The ServiceMonitor and
NOTES.txt follow it.
*/}}
{{- define "cloudflare-oauth-exporter.telemetryPath" -}}
{{- $path := .Values.web.telemetryPath }}
{{- $valueNext := false }}
{{- range .Values.extraArgs }}
{{- if $valueNext }}
{{- $path = . }}
{{- $valueNext = false }}
{{- else if hasPrefix "--web.telemetry-path=" . }}
{{- $path = trimPrefix "--web.telemetry-path=" . }}
{{- else if eq . "--web.telemetry-path" }}
{{- $valueNext = true }}
{{- end }}
{{- end }}
{{- $path }}
{{- end }}

{{/*
Name of the Secret holding web-config.yml: the user's, or the one the chart renders from
web.tls / web.basicAuth; empty when the metrics port is plain HTTP without auth.
*/}}
{{- define "cloudflare-oauth-exporter.webConfigSecret" -}}
{{- if .Values.web.existingConfigSecret }}
{{- .Values.web.existingConfigSecret }}
{{- else if or .Values.web.tls.enabled .Values.web.basicAuth.users }}
{{- printf "%s-web-config" (include "cloudflare-oauth-exporter.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* The web config file the chart renders (exporter-toolkit format). */}}
{{- define "cloudflare-oauth-exporter.webConfig" -}}
{{- $config := dict }}
{{- if .Values.web.tls.enabled }}
{{- $tls := dict "cert_file" "/etc/cloudflare-oauth-exporter/tls/tls.crt" "key_file" "/etc/cloudflare-oauth-exporter/tls/tls.key" "min_version" .Values.web.tls.minVersion "client_auth_type" .Values.web.tls.clientAuthType }}
{{- if ne .Values.web.tls.clientAuthType "NoClientCert" }}
{{- $_ := set $tls "client_ca_file" "/etc/cloudflare-oauth-exporter/tls/ca.crt" }}
{{- end }}
{{- $_ := set $config "tls_server_config" $tls }}
{{- end }}
{{- with .Values.web.basicAuth.users }}
{{- $_ := set $config "basic_auth_users" . }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The pod template (metadata + spec). Kept apart from the Deployment so that a StatefulSet (for
sharding accounts across replicas) can reuse it unchanged.
*/}}
{{- define "cloudflare-oauth-exporter.podTemplate" -}}
{{- $scheme := include "cloudflare-oauth-exporter.authScheme" . }}
{{- $secretFile := ternary "api-token" "api-key" (eq $scheme "token") -}}
metadata:
  labels:
    {{- include "cloudflare-oauth-exporter.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $ownSecret := include "cloudflare-oauth-exporter.rendersSecret" . }}
  {{- if or .Values.podAnnotations $ownSecret (include "cloudflare-oauth-exporter.webConfigSecret" .) }}
  annotations:
    {{- if $ownSecret }}
    # Roll the pod when the chart's Secret changes: the exporter reads the file only at start.
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- if and (include "cloudflare-oauth-exporter.webConfigSecret" .) (not .Values.web.existingConfigSecret) }}
    checksum/web-config: {{ include "cloudflare-oauth-exporter.webConfig" . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "cloudflare-oauth-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: exporter
      image: {{ include "cloudflare-oauth-exporter.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- if .Values.sharding.enabled }}
      # files/shard.py takes this pod's shard from its name, then runs the exporter with the args.
      command:
        {{- list "python" "-c" (.Files.Get "files/shard.py") | toYaml | nindent 8 }}
      {{- end }}
      args:
        {{- include "cloudflare-oauth-exporter.args" . | nindent 8 }}
      env:
        {{- if .Values.sharding.enabled }}
        # <statefulset>-<ordinal>: the ordinal is this pod's shard (files/shard.py), on every
        # Kubernetes version (the apps.kubernetes.io/pod-index label needs 1.28).
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- if eq $scheme "shardTokens" }}
        # Every shard's token is mounted under its own directory; this pod reads its own.
        # Kubernetes leaves $(EXPORTER_SHARD) as written (no such variable in the spec), and
        # files/shard.py fills it in.
        - name: CLOUDFLARE_API_TOKEN_FILE
          value: {{ printf "%s/shard-$(EXPORTER_SHARD)/api-token" (include "cloudflare-oauth-exporter.secretMountPath" .) }}
        {{- else if eq $scheme "token" }}
        - name: CLOUDFLARE_API_TOKEN_FILE
          value: {{ printf "%s/%s" (include "cloudflare-oauth-exporter.secretMountPath" .) $secretFile }}
        {{- else }}
        - name: CLOUDFLARE_API_EMAIL
          value: {{ .Values.cloudflare.apiEmail | quote }}
        - name: CLOUDFLARE_API_KEY_FILE
          value: {{ printf "%s/%s" (include "cloudflare-oauth-exporter.secretMountPath" .) $secretFile }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: 9878
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
          {{- if .Values.web.tls.enabled }}
          scheme: HTTPS
          {{- end }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
          {{- if .Values.web.tls.enabled }}
          scheme: HTTPS
          {{- end }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: credentials
          mountPath: {{ include "cloudflare-oauth-exporter.secretMountPath" . }}
          readOnly: true
        {{- if include "cloudflare-oauth-exporter.webConfigSecret" . }}
        - name: web-config
          mountPath: /etc/cloudflare-oauth-exporter/web
          readOnly: true
        {{- end }}
        {{- if .Values.web.tls.secretName }}
        - name: tls
          mountPath: /etc/cloudflare-oauth-exporter/tls
          readOnly: true
        {{- end }}
        # The only writable path: the root filesystem is read-only.
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: credentials
      {{- if eq $scheme "shardTokens" }}
      projected:
        defaultMode: 0440
        sources:
          {{- range $index, $secret := .Values.sharding.existingSecrets }}
          - secret:
              name: {{ $secret.name }}
              items:
                - key: {{ default "api-token" $secret.key }}
                  path: {{ printf "shard-%d/api-token" $index }}
          {{- end }}
      {{- else }}
      secret:
        secretName: {{ include "cloudflare-oauth-exporter.secretName" . }}
        # Project only the key in use: an existing Secret may hold other credentials.
        items:
          - key: {{ include "cloudflare-oauth-exporter.secretKey" . }}
            path: {{ $secretFile }}
        defaultMode: 0440
      {{- end }}
    {{- with include "cloudflare-oauth-exporter.webConfigSecret" . }}
    - name: web-config
      secret:
        secretName: {{ . }}
        items:
          - key: web-config.yml
            path: web-config.yml
        defaultMode: 0440
    {{- end }}
    {{- with .Values.web.tls.secretName }}
    - name: tls
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    - name: tmp
      emptyDir: {}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
