"""The validating webhook `validate-llmworkload` (failurePolicy Fail), served by the operator through
kopf: refuses what cannot fit, with what would, and warns on near misses. Only LLMWorkloads go
through it, so an operator that is down blocks nothing else. (The pod webhook: gating.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from rackfit.errors import RackfitError
from rackfit.operator import kube
from rackfit.planner import admission


async def validate_workload(spec: dict, namespace: str, warnings: list[str], memo: kopf.Memo, **_: Any) -> None:
    # async: the check is pure and takes milliseconds, so it runs on the event loop; as a sync handler it
    # waited for one of kopf's worker threads, which a burst of reconciles (each waiting for its decision
    # cycle) holds, and every LLMWorkload's creation waited with it
    doc = dict(spec)
    hf = None
    try:
        ref = (doc.get("model") or {}).get("huggingFaceConfig")
        if ref:
            hf = await asyncio.to_thread(kube.read_hf_config, namespace, ref)  # the client blocks
            if hf is None:  # applied together with its ConfigMap, it may come first: the operator waits
                warnings.append(f"ConfigMap {namespace}/{ref} with key config.json not found yet: the model is "
                                "checked once it exists")
                return
        warnings.extend(admission.check(doc, memo.ctx.catalog, hf))
    except RackfitError as e:
        raise kopf.AdmissionError(str(e), code=422) from None
