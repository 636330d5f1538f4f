{{/* Labels shared by every object. */}}
{{- define "glusterfs-csi.labels" -}}
app.kubernetes.io/name: glusterfs-csi
app.kubernetes.io/part-of: glusterfs-csi
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The driver's image. */}}
{{- define "glusterfs-csi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* Where the node plugin sees glusterd's socket: its host directory is
mounted at /host/glusterd, so a restarted glusterd's new socket shows. */}}
{{- define "glusterfs-csi.nodeGlusterdSocket" -}}
/host/glusterd/{{ base .Values.glusterd.socket.hostPath }}
{{- end }}

{{/* The brick agent token, if its Secret exists (optional). */}}
{{- define "glusterfs-csi.brickAgentToken" -}}
- name: GLUSTERFS_CSI_BRICK_AGENT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.brickAgent.tokenSecretName }}
      key: token
      optional: true
{{- end }}
