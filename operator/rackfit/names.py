"""Kubernetes names rackfit reads or writes: its API, resources, labels, annotations, the scheduling gate."""

GROUP, VERSION, KIND, PLURAL = "rackfit.io", "v1alpha1", "LLMWorkload", "llmworkloads"

GPU = "nvidia.com/gpu"                         # the device plugin's extended resource
WORKLOAD_LABEL = "rackfit.io/workload"         # on pods (and pod templates): the LLMWorkload they belong to
WORKLOAD_ANNOTATION = "rackfit.io/workload"    # on a target: the LLMWorkload that patched it
APPLIED_ANNOTATION = "rackfit.io/applied"      # on a target: what rackfit added, to take exactly that back
GATE = "rackfit.io/placement"                  # scheduling gate held until the pod is pinned to its domain
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
