"""accelerate's FSDP2 with a bitsandbytes base loads the whole quantized model on every GPU before it shards it
(hf_fsdp2.whole_quantized_load: transformers' bitsandbytes quantizer places the model on the current GPU, and
fsdp2_prepare_model holds `original_sd = model.state_dict()` while fully_shard makes the shards); with
fsdp_cpu_ram_efficient_loading (training.cpuRamEfficientLoading) or a 16-bit base it does not."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_peak
from rackfit.estimator.fsdp import bnb_quant_state_bytes
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import Training, parse_spec

SHAPE = {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 32000}


def _spec(precision: str, data: int = 2, **training):
    method = "qlora" if precision == "nf4" else "lora"
    return parse_spec({
        "model": {"architecture": SHAPE}, "workload": "training", "precision": precision,
        "training": {"framework": "fsdp", "fsdpVersion": 2, "modelCode": "transformers", "method": method,
                     "loraRank": 16, "microBatchSize": 1, "sequenceLength": 1024, "activationCheckpointing": "full",
                     **training},
        "parallelism": {"data": data}})


@pytest.mark.parametrize("precision", ["nf4", "int8"])
def test_bitsandbytes_base_holds_the_whole_model_and_its_shards_at_load(precision):
    def load(data: int) -> int:
        spec = _spec(precision, data)
        return training_peak(spec, estimate(spec).layout).load

    # whole + sharded / data, where the sharded part is the whole less a 4-bit base's quantization states, which are
    # not sharded (fsdp.bnb_quant_state_bytes; 0 for int8): at two ranks whole + sharded / 2, at four whole +
    # sharded / 4, so the two differ by a quarter of the sharded part
    sharded = 4 * (load(2) - load(4))
    assert sharded > 0
    spec = _spec(precision)
    states = bnb_quant_state_bytes(count_params(resolve(spec.model)), spec.training, precision, 1)
    assert (states > 0) == (precision == "nf4")
    assert load(2) == pytest.approx(1.5 * sharded + states, rel=1e-6)
    est = estimate(_spec(precision))
    assert est.peak_phase == "load"
    # the note says why and names the field that avoids it
    assert any(n.startswith("peak at load") and "cpuRamEfficientLoading: true" in n for n in est.notes)
    single = training_peak(_spec(precision, data=1), estimate(_spec(precision, data=1)).layout)
    assert single.load == 0   # one GPU: nothing is sharded, no second copy


def test_cpu_ram_efficient_loading_and_16bit_bases_make_no_whole_copy():
    for spec in (_spec("nf4", cpuRamEfficientLoading=True), _spec("bf16")):
        assert training_peak(spec, estimate(spec).layout).load == 0
        assert estimate(spec).peak_phase != "load"


def test_cpu_ram_efficient_loading_is_accelerates_fsdp2_option_only():
    with pytest.raises(ValueError, match="cpuRamEfficientLoading"):
        Training(framework="transformers", method="lora", cpuRamEfficientLoading=False)
    with pytest.raises(ValueError, match="cpuRamEfficientLoading"):
        Training(framework="fsdp", fsdpVersion=2, method="lora", cpuRamEfficientLoading=True)   # torchtune's code
