{{/* Labels shared by every object. */}}
{{- define "glusterfs-csi.labels" -}}
app.kubernetes.io/name: glusterfs-csi
app.kubernetes.io/part-of: glusterfs-csi
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The driver's image. */}}
{{- define "glusterfs-csi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Where the node plugin sees glusterd's socket: its host directory is
mounted at /host/glusterd, so a restarted glusterd's new socket shows. */}}
{{- define "glusterfs-csi.glusterdSocket" -}}
/host/glusterd/{{ base .Values.glusterd.socket.hostPath }}
{{- end }}

{{/* The brick agent token: the pods wait until its Secret exists. */}}
{{- define "glusterfs-csi.brickAgentToken" -}}
- name: GLUSTERFS_CSI_BRICK_AGENT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.brickAgent.tokenSecretName }}
      key: token
{{- end }}

{{/* .affinity with the node selector expression .expression added to each
of its required terms (ANDed), or as the only term. */}}
{{- define "glusterfs-csi.requireNodeExpression" -}}
{{- $affinity := deepCopy (.affinity | default (dict)) }}
{{- $nodeAffinity := get $affinity "nodeAffinity" | default (dict) }}
{{- $required := get $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution" | default (dict) }}
{{- $terms := get $required "nodeSelectorTerms" | default (list (dict)) }}
{{- $merged := list }}
{{- range $terms }}
{{- $expressions := get . "matchExpressions" | default (list) }}
{{- $merged = append $merged (merge (dict "matchExpressions" (append $expressions $.expression)) .) }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $merged }}
{{- $_ := set $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $nodeAffinity }}
{{- toYaml $affinity }}
{{- end }}

{{/* --metrics-listen for port .port, when metrics are on. */}}
{{- define "glusterfs-csi.metricsListen" -}}
{{- $address := .root.Values.metrics.listenAddress }}
{{- if contains ":" $address }}
- --metrics-listen=[{{ $address }}]:{{ .port }}
{{- else }}
- --metrics-listen={{ $address }}:{{ .port }}
{{- end }}
{{- end }}
