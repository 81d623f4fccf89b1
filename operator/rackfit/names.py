"""Kubernetes names rackfit reads or writes: its API, resources, labels, annotations, the scheduling gate."""

GROUP, VERSION, KIND, PLURAL = "rackfit.io", "v1alpha1", "LLMWorkload", "llmworkloads"

GPU = "nvidia.com/gpu"                         # the device plugin's extended resource
WORKLOAD_LABEL = "rackfit.io/workload"         # on pods (and pod templates): the LLMWorkload they belong to
WORKLOAD_ANNOTATION = "rackfit.io/workload"    # on a target: the LLMWorkload that patched it
APPLIED_ANNOTATION = "rackfit.io/applied"      # on a target: what rackfit added, to take exactly that back
GATE = "rackfit.io/placement"                  # scheduling gate held until the pod is pinned to its domain
# on a pod: the domain (or instance type) rackfit pinned it to when it lifted the gate. A bound labelled
# pod without it escaped the gate (made while the webhook was not in effect, or ungated by hand)
PLACED_ANNOTATION = "rackfit.io/placed-into"
# GPU Feature Discovery's product label: the Node watch asks the API server only for nodes carrying it
GPU_NODE_SELECTOR = "nvidia.com/gpu.product"
# finished pods hold no GPUs: the Pod watch leaves them out server-side
ACTIVE_POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"

# Node labels: the instance type, and the NVLink domain (GB200/GB300 MNNVL clique, else CoreWeave's
# NVLink domain, else the host itself: an 8-GPU HGX board). InfiniBand labels are never a domain.
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CLIQUE_LABEL = "nvidia.com/gpu.clique"
COREWEAVE_DOMAIN_LABEL = "ds.coreweave.com/nvlink.domain"
HOSTNAME_LABEL = "kubernetes.io/hostname"
DOMAIN_LABELS = (CLIQUE_LABEL, COREWEAVE_DOMAIN_LABEL)

# The plan handed to the containers (set on pod templates by the operator, on labelled pods by the
# webhook): `vllm serve --tensor-parallel-size $(RACKFIT_TENSOR_PARALLEL_SIZE)`, `torchrun --nnodes
# $(RACKFIT_NNODES) --nproc-per-node $(RACKFIT_GPUS_PER_NODE)` follow every re-plan
ENV_PREFIX = "RACKFIT_"
ENV_TENSOR, ENV_PIPELINE = "RACKFIT_TENSOR_PARALLEL_SIZE", "RACKFIT_PIPELINE_PARALLEL_SIZE"
ENV_DATA, ENV_EXPERT = "RACKFIT_DATA_PARALLEL_SIZE", "RACKFIT_EXPERT_PARALLEL_SIZE"
ENV_NNODES, ENV_GPUS_PER_NODE, ENV_INSTANCE_TYPE = "RACKFIT_NNODES", "RACKFIT_GPUS_PER_NODE", "RACKFIT_INSTANCE_TYPE"
# serving engines only (vllm, sglang, tensorrt-llm)
ENV_MAX_MODEL_LEN, ENV_GPU_MEMORY_UTILIZATION = "RACKFIT_MAX_MODEL_LEN", "RACKFIT_GPU_MEMORY_UTILIZATION"
ENV_MAX_NUM_SEQS = "RACKFIT_MAX_NUM_SEQS"

# NVIDIA's DRA driver (github.com/NVIDIA/k8s-dra-driver-gpu): a ComputeDomain gives the pods of one job
# on several nodes of an NVL72 rack their IMEX channel (NVLink between nodes); its pods claim the channel
# through the ResourceClaimTemplate the driver makes (api/nvidia.com/resource/v1beta1/computedomain.go)
COMPUTE_DOMAIN_GROUP, COMPUTE_DOMAIN_VERSION = "resource.nvidia.com", "v1beta1"
COMPUTE_DOMAIN_KIND, COMPUTE_DOMAIN_PLURAL = "ComputeDomain", "computedomains"
CHANNEL_CLAIM = "rackfit-imex-channel"  # the pod's name for that claim (spec.resourceClaims, resources.claims)

# Kueue (sigs.k8s.io/kueue): a target with the queue label is Kueue's; rackfit is the controller of the
# AdmissionChecks whose spec.controllerName is KUEUE_CONTROLLER, and hands its plan to Kueue's pods in
# the podSetUpdates annotation KUEUE_PLAN_ANNOTATION (the pod webhook turns it into RACKFIT_* variables)
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_CONTROLLER = "rackfit.io/fit"
KUEUE_PLAN_ANNOTATION = "rackfit.io/kueue-plan"
# Kueue's topology-aware scheduling (TAS) annotations on a pod template (apis/kueue/v1beta2/topology_types.go):
# all pods of the pod set inside one domain of that node-label level; or each slice of `slice-size` pods
# inside one; pod sets of one group name (a LeaderWorkerSet's leader and workers) fitted together
KUEUE_REQUIRED_TOPOLOGY = "kueue.x-k8s.io/podset-required-topology"
KUEUE_PREFERRED_TOPOLOGY = "kueue.x-k8s.io/podset-preferred-topology"
KUEUE_UNCONSTRAINED_TOPOLOGY = "kueue.x-k8s.io/podset-unconstrained-topology"
KUEUE_SLICE_TOPOLOGY = "kueue.x-k8s.io/podset-slice-required-topology"
KUEUE_SLICE_SIZE = "kueue.x-k8s.io/podset-slice-size"
KUEUE_SLICE_CONSTRAINTS = "kueue.x-k8s.io/podset-slice-required-topology-constraints"
KUEUE_GROUP_NAME = "kueue.x-k8s.io/podset-group-name"
KUEUE_TAS_ANNOTATIONS = (KUEUE_REQUIRED_TOPOLOGY, KUEUE_PREFERRED_TOPOLOGY, KUEUE_UNCONSTRAINED_TOPOLOGY,
                         KUEUE_SLICE_TOPOLOGY, KUEUE_SLICE_SIZE, KUEUE_SLICE_CONSTRAINTS, KUEUE_GROUP_NAME)
# written with the TAS annotations on a suspended Job's or JobSet's templates: a toleration of a taint
# nobody sets. Kueue brings a Workload it has not admitted up to date with its job only when the pod sets
# differ in counts, containers or tolerations, not annotations (pkg/util/equality/podset.go), and a
# suspended job's containers are immutable; this is the change that makes Kueue rebuild it itself
KUEUE_TOPOLOGY_TOLERATION = {"key": "rackfit.io/topology", "operator": "Exists", "effect": "NoSchedule"}
# podSetUpdates annotation: the ComputeDomain channel's ResourceClaimTemplate the pods of a Kueue-admitted
# placement across NVL72 nodes claim (the pod webhook adds the claim)
KUEUE_CLAIM_ANNOTATION = "rackfit.io/kueue-channel"
# the label of a ComputeDomain made for a Kueue Workload (owned by it, not by the LLMWorkload: Kueue, not
# rackfit, picks and frees its rack)
KUEUE_WORKLOAD_LABEL = "rackfit.io/kueue-workload"
