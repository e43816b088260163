{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "edgepass.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: the release name, with the chart name unless it holds it. */}}
{{- define "edgepass.fullname" -}}
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

{{- define "edgepass.adminName" -}}
{{- printf "%s-admin" (include "edgepass.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edgepass.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edgepass.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "edgepass.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgepass.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "edgepass.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "edgepass.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgepass
{{- end }}

{{/* The image reference: repository, then @digest, else :tag (default appVersion). */}}
{{- define "edgepass.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* publicURL without a trailing slash, checked: scheme://host[:port], no path. */}}
{{- define "edgepass.publicURL" -}}
{{- $raw := required "publicURL is required: the daemon's external base URL, e.g. https://auth.example.com" .Values.publicURL }}
{{- $u := urlParse $raw }}
{{- if not (has $u.scheme (list "http" "https")) }}
{{- fail (printf "publicURL %q must start with https:// (or http://)" $raw) }}
{{- end }}
{{- if not $u.host }}
{{- fail (printf "publicURL %q has no host" $raw) }}
{{- end }}
{{- if not (has $u.path (list "" "/")) }}
{{- fail (printf "publicURL %q has a path: the daemon serves /login, /callback, … at the root of its host" $raw) }}
{{- end }}
{{- if or $u.query $u.fragment $u.userinfo }}
{{- fail (printf "publicURL %q must not carry a query, fragment or user info" $raw) }}
{{- end }}
{{- printf "%s://%s" $u.scheme $u.host }}
{{- end }}

{{/* The publicURL's host name, for the IngressRoute's Host rule. */}}
{{- define "edgepass.publicHost" -}}
{{- (urlParse (include "edgepass.publicURL" .)).hostname }}
{{- end }}

{{/* Where the pod finds its files (the daemon's config names them). */}}
{{- define "edgepass.configFile" -}}/etc/edgepass/edgepass.yml{{- end }}
{{- define "edgepass.secretsDir" -}}/etc/edgepass/secrets{{- end }}
{{- define "edgepass.natsCADir" -}}/etc/edgepass/nats{{- end }}
{{- define "edgepass.dataDir" -}}/var/lib/edgepass{{- end }}

{{/*
A secret reference from values ({secretName, key}), checked; "what" names
the value for the error.
*/}}
{{- define "edgepass.secretRef" -}}
{{- $ref := .ref }}
{{- if not (and $ref $ref.secretName $ref.key) }}
{{- fail (printf "%s.secretName and %s.key are required: the chart mounts an existing Secret (deploy/helm/README.md)" .what .what) }}
{{- end }}
{{- end }}

{{/*
The plugin's setting names (plugin.Config and plugin.NATSConfig, as users
write them). integration/deploy keeps these lists equal to the plugin's
Config fields, so a misspelled setting fails the render instead of being
refused by Traefik.
*/}}
{{- define "edgepass.pluginSettings" -}}
loginURL issuer audience jwks trustAnchors cookieName clockSkew allowedGroups allowedUsers allowedEmailDomains publicPaths userHeader emailHeader groupsHeader nameHeader subjectHeader groupsSeparator stripHeaders removeCookie requireSync logLevel cacheSize maxStaleness staleAction nats assertionHeader assertionAudience serviceTokens bearer
{{- end }}
{{- define "edgepass.pluginNATSSettings" -}}
urls bucket token tokenFile user password passwordFile nkeySeed nkeySeedFile credsFile certFile keyFile edgeName caFile tlsServerName insecureSkipVerify replicaID
{{- end }}

{{/*
The plugin settings of one Middleware: edge.settings, then the entry's
settings, then what the chart derives (loginURL, issuer, trustAnchors,
nats). Input: dict "root" $ "mw" <entry>. Output: YAML.
*/}}
{{- define "edgepass.middlewareSettings" -}}
{{- $root := .root }}
{{- $mw := .mw }}
{{- $known := splitList " " (include "edgepass.pluginSettings" $root) }}
{{- $owned := list "loginURL" "issuer" "trustAnchors" "nats" }}
{{- $settings := dict }}
{{- range $source, $s := dict "edge.settings" ($root.Values.edge.settings | default dict) (printf "middlewares[%s].settings" $mw.name) ($mw.settings | default dict) }}
{{- range $k, $v := $s }}
{{- $match := "" }}
{{- range $known }}{{ if eq (lower .) (lower $k) }}{{ $match = . }}{{ end }}{{ end }}
{{- if not $match }}
{{- fail (printf "%s: unknown plugin setting %q (the plugin would refuse it); see the plugin's settings in README.md" $source $k) }}
{{- end }}
{{- if has $match $owned }}
{{- fail (printf "%s: %q is set by the chart (from publicURL, edge.trustAnchors and edge.nats)" $source $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- $settings = merge (deepCopy ($mw.settings | default dict)) (deepCopy ($root.Values.edge.settings | default dict)) }}
{{- $pub := include "edgepass.publicURL" $root }}
{{- $_ := set $settings "loginURL" (printf "%s/login" $pub) }}
{{- $_ := set $settings "issuer" $pub }}
{{- $_ := set $settings "trustAnchors" $root.Values.edge.trustAnchors }}
{{- $n := $root.Values.edge.nats }}
{{- $nats := dict "urls" ($n.urls | default $root.Values.nats.urls) }}
{{- if not $nats.urls }}
{{- fail "edge.nats.urls (or nats.urls) is required: the plugin follows the edge state over NATS" }}
{{- end }}
{{- $_ := set $nats "user" (required "edge.nats.user is required (one NATS user per group of Traefik replicas)" $n.user) }}
{{- $_ := set $nats "passwordFile" (required "edge.nats.passwordFile is required (a file mounted into the Traefik pods)" $n.passwordFile) }}
{{- with $n.caFile }}{{ $_ := set $nats "caFile" . }}{{ end }}
{{- $bucket := $n.bucket | default $root.Values.nats.edgeBucket }}
{{- if ne $bucket "edgepass_edge" }}{{ $_ := set $nats "bucket" $bucket }}{{ end }}
{{- $_ := set $settings "nats" $nats }}
{{- toYaml $settings }}
{{- end }}
