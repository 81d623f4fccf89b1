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
- The rackfit-observed group (docs/observed.md) joins what workloads really use to the estimate through
  rackfit_pod_workload_info{namespace,pod,workload}: dcgm-exporter's DCGM_FI_DEV_FB_USED (MiB per GPU,
  with its pod mapping on; NVIDIA/dcgm-exporter etc/default-counters.csv, internal/pkg/transformation/
  const.go) for training and engine transformers, the engines' KV cache for vLLM and SGLang, whose
  framebuffer reads gpuMemoryUtilization x the GPU by design. SGLang's sglang:max_total_num_tokens
  (python/sglang/srt/metrics/collector.py) is a number PromQL joins directly; vLLM publishes its KV cache
  only as labels of vllm:cache_config_info (vllm/config/cache.py metrics_info(), vllm/v1/metrics/
  loggers.py), which PromQL cannot compare, so the operator re-exports it as
  rackfit_workload_observed_kv_tokens when it reads Prometheus (observed.prometheusURL).
  Absence is guarded per workload (RackfitObservedMissing: a placed workload whose inputs are absent, the
  per-series form of absent(), which a single exported GPU elsewhere would silence).
*/ -}}
{{- define "rackfit.alertRules" -}}
{{- $r := .Values.monitoring.prometheusRule.rules }}
{{- $extra := .Values.monitoring.prometheusRule.alertLabels }}
{{- $w := .Values.observed.window }}
{{- $info := "max by (namespace, pod, workload) (rackfit_pod_workload_info)" }}
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
  - name: rackfit-observed
    rules:
      # peak framebuffer use of the busiest GPU of each workload over the window, bytes (DCGM's MiB x 2^20)
      - record: rackfit:workload_observed_gpu_memory_bytes:max
        expr: |-
          max by (namespace, workload) (
            max_over_time(DCGM_FI_DEV_FB_USED[{{ $w }}]) * on (namespace, pod) group_left (workload) {{ $info }}
          ) * 1048576
      - record: rackfit:workload_observed_to_estimate_bytes:ratio
        expr: |-
          rackfit:workload_observed_gpu_memory_bytes:max
          / on (namespace, workload) max by (namespace, workload) (rackfit_workload_estimate_bytes{compare="framebuffer"})
      # the KV cache the engine allocated per replica, tokens (the smallest replica's)
      - record: rackfit:workload_engine_kv_tokens:min
        expr: |-
          min by (namespace, workload) (sglang:max_total_num_tokens * on (namespace, pod) group_left (workload) {{ $info }})
          or
          min by (namespace, workload) (rackfit_workload_observed_kv_tokens)
      - record: rackfit:workload_engine_to_estimate_kv_tokens:ratio
        expr: |-
          rackfit:workload_engine_kv_tokens:min
          / on (namespace, workload) max by (namespace, workload) (rackfit_workload_estimate_kv_tokens)
      - record: rackfit:workload_engine_to_required_kv_tokens:ratio
        expr: |-
          rackfit:workload_engine_kv_tokens:min
          / on (namespace, workload) max by (namespace, workload) (rackfit_workload_required_kv_tokens)
      {{- with $r.observedAboveEstimate }}{{ if .enabled }}
      - alert: RackfitObservedAboveEstimate
        expr: |-
          rackfit:workload_observed_gpu_memory_bytes:max
          > on (namespace, workload) max by (namespace, workload) (rackfit_workload_estimate_bytes{compare="framebuffer"})
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          figure: framebuffer
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `LLMWorkload {{ $labels.namespace }}/{{ $labels.workload }} uses more GPU memory than rackfit estimated` | quote }}
          description: {{ printf `{{ $labels.namespace }}/{{ $labels.workload }} peaked at {{ $value | humanize1024 }}B on its busiest GPU (dcgm-exporter DCGM_FI_DEV_FB_USED, max over %s), above rackfit's estimate of {{ with printf "max(rackfit_workload_estimate_bytes{namespace='%%s',workload='%%s'})" $labels.namespace $labels.workload | query }}{{ . | first | value | humanize1024 }}{{ end }}B per GPU. Likely cause: a larger batch or sequence than the spec says, checkpointing or framework settings not as in the spec, allocator fragmentation, or another process on the GPU; it is close to running out of memory. See the EstimateHolds condition: kubectl describe llmw -n {{ $labels.namespace }} {{ $labels.workload }}` $w | quote }}
      - alert: RackfitObservedAboveEstimate
        expr: |-
          rackfit:workload_engine_kv_tokens:min
          < on (namespace, workload) max by (namespace, workload) (rackfit_workload_required_kv_tokens)
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          figure: kv_cache
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `The serving engine of LLMWorkload {{ $labels.namespace }}/{{ $labels.workload }} allocated less KV cache than its concurrency needs` | quote }}
          description: {{ `The engine of {{ $labels.namespace }}/{{ $labels.workload }} allocated {{ $value | humanize }} KV cache tokens per replica, fewer than concurrency x contextLength = {{ with printf "max(rackfit_workload_required_kv_tokens{namespace='%s',workload='%s'})" $labels.namespace $labels.workload | query }}{{ . | first | value | humanize }}{{ end }} tokens (rackfit estimated {{ with printf "max(rackfit_workload_estimate_kv_tokens{namespace='%s',workload='%s'})" $labels.namespace $labels.workload | query }}{{ . | first | value | humanize }}{{ end }}). Likely cause: the engine runs with a lower gpuMemoryUtilization (mem_fraction_static) or another release than the spec says, or more memory outside the KV cache (CUDA graphs, activations, another process) than estimated; requests will queue or be preempted.` | quote }}
      {{- end }}{{ end }}
      {{- with $r.observedMissing }}{{ if .enabled }}
      - alert: RackfitObservedMissing
        expr: |-
          max by (namespace, workload) (rackfit_workload_estimate_bytes{compare="framebuffer"})
            and on (namespace, workload) max by (namespace, workload) (rackfit_pod_workload_info)
            unless on (namespace, workload) rackfit:workload_observed_gpu_memory_bytes:max
          or
          max by (namespace, workload) (rackfit_workload_required_kv_tokens)
            and on (namespace, workload) max by (namespace, workload) (rackfit_pod_workload_info)
            unless on (namespace, workload) rackfit:workload_engine_kv_tokens:min
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: {{ `Nothing reports what LLMWorkload {{ $labels.namespace }}/{{ $labels.workload }} uses` | quote }}
          description: {{ `{{ $labels.namespace }}/{{ $labels.workload }} has running pods, but Prometheus has no series of what they use (training: dcgm-exporter's DCGM_FI_DEV_FB_USED with pod and namespace labels; serving: vllm:cache_config_info or sglang:max_total_num_tokens), so RackfitObservedAboveEstimate cannot fire for it. Check that dcgm-exporter runs with its Kubernetes pod mapping and is scraped with honorLabels, or that the engine's /metrics is scraped (docs/observed.md).` | quote }}
      {{- end }}{{ end }}
{{- end }}
