{{/* The worker's pod template, shared by the Deployment and the StatefulSet. */}}
{{- define "meeting-agent.podTemplate" -}}
metadata:
  labels:
    {{- include "meeting-agent.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "meeting-agent.configToml" . | trim | sha256sum }}
    {{- if not .Values.existingSecret }}
    checksum/secret-values: {{ toJson .Values.secrets | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "meeting-agent.serviceAccountName" . }}
  automountServiceAccountToken: false
  # Longer than the drain timeout (checked at render time): SIGTERM drains the worker.
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  initContainers:
    # config.toml (ConfigMap) + the API keys (Secret) -> one file in memory for the agent.
    - name: config
      image: {{ include "meeting-agent.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - /bin/sh
        - -c
        - umask 077 && { cat /etc/meeting-agent/config/config.toml; echo; cat /etc/meeting-agent/secret/api-keys.toml; } > /run/meeting-agent/config.toml
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 32Mi
      volumeMounts:
        - name: config
          mountPath: /etc/meeting-agent/config
          readOnly: true
        - name: secret-files
          mountPath: /etc/meeting-agent/secret
          readOnly: true
        - name: run
          mountPath: /run/meeting-agent
  containers:
    - name: meeting-agent
      image: {{ include "meeting-agent.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: [worker]
      env:
        - name: MEETING_AGENT_CONFIG
          value: /run/meeting-agent/config.toml
        - name: MEETING_AGENT_DATA_DIR
          value: /var/lib/meeting-agent
        {{- range $env := splitList " " (include "meeting-agent.secretEnvNames" .) }}
        - name: {{ $env }}
          valueFrom:
            secretKeyRef:
              name: {{ include "meeting-agent.secretName" $ }}
              key: {{ $env }}
              optional: true
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.api.port }}
          protocol: TCP
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- with .Values.startupProbe }}
      startupProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: run
          mountPath: /run/meeting-agent
          readOnly: true
        - name: data
          mountPath: /var/lib/meeting-agent
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "meeting-agent.fullname" . }}
    - name: secret-files
      secret:
        secretName: {{ include "meeting-agent.secretName" . }}
        defaultMode: 0440
        items:
          - key: api-keys.toml
            path: api-keys.toml
    - name: run
      emptyDir:
        medium: Memory
        sizeLimit: 1Mi
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    {{- if not .Values.persistence.enabled }}
    - name: data
      emptyDir:
        {{- toYaml .Values.persistence.emptyDir | nindent 8 }}
    {{- else if eq .Values.workload.kind "Deployment" }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ default (printf "%s-data" (include "meeting-agent.fullname" .)) .Values.persistence.existingClaim }}
    {{- end }}
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
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
