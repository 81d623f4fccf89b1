{{- /*
rackfit's alert rules: the only place their expressions live. prometheusrule.yaml renders them as
the PrometheusRule's spec; tests/unit/test_alerts.py renders that object with `helm template` and
runs `promtool test rules` (tests/data/alerts/) on its spec. Per-rule enabled/for/severity come from
monitoring.prometheusRule.rules in values.yaml.

Why these shapes:
- Workload and domain series are reduced with `max by (...)`: every replica exports its own copy
  (a standby keeps the last values it computed as leader), and an alert must fire once per
  workload/domain, never once per replica. The ServiceMonitor uses honorLabels so that `namespace`
  is the LLMWorkload's namespace, not the operator's.
- RackfitOperatorDown uses absent(up{...} == 1): it fires both when every scraped replica is down
  (up == 0) and when Prometheus scrapes no replica at all (Deployment scaled to 0, ServiceMonitor
  not selected, target gone), which `up == 0` alone would miss; one replica up is enough to stay
  silent (the others are standbys). job is the Service's name (Prometheus Operator's default job
  label for a ServiceMonitor).
*/ -}}
{{- define "rackfit.alertRules" -}}
{{- $r := .Values.monitoring.prometheusRule.rules }}
{{- $extra := .Values.monitoring.prometheusRule.alertLabels }}
groups:
  - name: rackfit
    rules:
      {{- with $r.workloadOversubscribed }}{{ if .enabled }}
      - alert: RackfitWorkloadOversubscribed
        expr: |-
          max by (namespace, name) (rackfit_workload_memory_required_bytes > rackfit_workload_memory_capacity_bytes)
          or
          max by (namespace, name) (rackfit_workload_oversubscribed == 1)
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `LLMWorkload {{ $labels.namespace }}/{{ $labels.name }} needs more GPU memory than its GPUs hold` | quote }}
          description: {{ `The estimated peak GPU memory per GPU of {{ $labels.namespace }}/{{ $labels.name }} is above the usable memory of the GPUs it is placed on (or its target asks for): it will run out of memory. See kubectl get llmw -n {{ $labels.namespace }} {{ $labels.name }} -o yaml.` | quote }}
      {{- end }}{{ end }}
      {{- with $r.domainOversubscribed }}{{ if .enabled }}
      - alert: RackfitDomainOversubscribed
        expr: |-
          max by (instance_type, domain) (rackfit_domain_gpus_requested)
          > max by (instance_type, domain) (rackfit_domain_gpus_allocatable)
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `NVLink domain {{ $labels.domain }} ({{ $labels.instance_type }}) is oversubscribed` | quote }}
          description: {{ `Bound pods request {{ $value }} GPUs in NVLink domain {{ $labels.domain }} ({{ $labels.instance_type }}), more than its schedulable nodes have allocatable (nodes cordoned, lost or shrunk under running pods).` | quote }}
      {{- end }}{{ end }}
      {{- with $r.workloadUnplaceable }}{{ if .enabled }}
      - alert: RackfitWorkloadUnplaceable
        expr: |-
          max by (namespace, name) (rackfit_workload_fits) == 1
          and on (namespace, name)
          max by (namespace, name) (rackfit_workload_placed) == 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `LLMWorkload {{ $labels.namespace }}/{{ $labels.name }} fits but finds no free GPUs` | quote }}
          description: {{ `{{ $labels.namespace }}/{{ $labels.name }} fits an allowed instance type, but no NVLink domain has enough free GPUs for its layout, so its target is not placed. Free capacity or allow more instance types.` | quote }}
      {{- end }}{{ end }}
      {{- with $r.operatorDown }}{{ if .enabled }}
      - alert: RackfitOperatorDown
        expr: |-
          absent(up{job="{{ include "rackfit.fullname" $ }}", namespace="{{ $.Release.Namespace }}"} == 1)
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          # absent() of a comparison carries no labels: name the operator's job and namespace here
          job: {{ include "rackfit.fullname" $ }}
          namespace: {{ $.Release.Namespace }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "No rackfit operator replica is up"
          description: {{ printf "Prometheus has scraped no healthy rackfit operator (job %s) in namespace %s: LLMWorkloads are neither estimated nor placed, and gated pods stay pending." (include "rackfit.fullname" $) $.Release.Namespace | quote }}
      {{- end }}{{ end }}
{{- end }}
