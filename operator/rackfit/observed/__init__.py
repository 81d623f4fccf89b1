"""What each placed workload really uses, beside what rackfit estimated (issue 21), as pure functions.

- `promql.py`: the one batched PromQL query for every workload, and the parsing of its answer into an
  `Observation` per workload (the metric names, labels and units are those dcgm-exporter, vLLM and SGLang
  publish: see the sources cited there);
- `compare.py`: the figures rackfit exports for PromQL to join (`estimate_figures`), the comparison of
  an observation with the estimate (`verdict`, the EstimateHolds condition) and `status.observed`.

No I/O here: the operator's thin HTTP module (rackfit.operator.promquery) asks Prometheus, the operator's
loop (rackfit.operator.observed) keeps the last answer and writes status, the CLI prints it.
"""

from rackfit.observed.compare import (
    EstimateFigures,
    Verdict,
    estimate_figures,
    observed_view,
    verdict,
)
from rackfit.observed.promql import Observation, batched_query, parse_result

__all__ = ["EstimateFigures", "Observation", "Verdict", "batched_query", "estimate_figures", "observed_view",
           "parse_result", "verdict"]
