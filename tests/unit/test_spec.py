"""parse_spec: good documents accepted, bad ones refused with one InvalidWorkload naming the field."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.models import resolve
from rackfit.names import KIND
from rackfit.spec import parse_spec

BASE = dict(model=dict(preset="llama-3.1-8b"), workload="inference")


def refused(doc) -> list[tuple[str, str]]:
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(doc)
    assert e.value.errors, "InvalidWorkload without errors"
    assert str(e.value)
    return e.value.errors


def one_error(doc) -> tuple[str, str]:
    errors = refused(doc)
    assert len(errors) == 1, errors
    return errors[0]


def test_minimal_spec_defaults():
    s = parse_spec(BASE)
    assert s.precision == "bf16" and s.training is None
    assert s.inference.context_length == 4096 and s.inference.concurrency == 1
    assert s.inference.chunk_tokens == 4096
    assert s.placement.headroom == 0.1


def test_training_block_required_like_the_crd_s_cel_rule():
    path, msg = one_error(dict(BASE, workload="training"))
    assert path == "spec.training" and "needs a `training` block" in msg


def test_training_defaults():
    s = parse_spec(dict(BASE, workload="training", training={}))
    assert s.inference is None
    t = s.training
    assert (t.method, t.optimizer, t.master_weights, t.zero_stage, t.rank) == ("full", "adamw", "fp32", 0, 16)


def test_manifest_and_bare_spec_agree():
    manifest = dict(apiVersion="rackfit.io/v1alpha1", kind=KIND, metadata=dict(name="x"), spec=BASE)
    assert parse_spec(manifest) == parse_spec(BASE)


def test_snake_case_names_accepted():
    s = parse_spec(dict(BASE, inference=dict(context_length=1024)))
    assert s.inference.context_length == 1024


@pytest.mark.parametrize("kind", ["Deployment", "llmworkload", None])
def test_wrong_kind(kind):
    path, msg = one_error(dict(apiVersion="rackfit.io/v1alpha1", kind=kind, spec=BASE))
    assert path == "kind" and KIND in msg


def test_manifest_without_spec():
    path, msg = one_error(dict(apiVersion="rackfit.io/v1alpha1", kind=KIND))
    assert path == "spec"


@pytest.mark.parametrize("doc", [None, [], "spec", 3])
def test_not_a_mapping(doc):
    one_error(doc)


def test_unknown_preset_lists_known():
    spec = parse_spec(dict(BASE, model=dict(preset="llama-9")))  # presets are resolved, not parsed
    with pytest.raises(InvalidWorkload) as e:
        resolve(spec.model)
    (path, msg), = e.value.errors
    assert path == "spec.model.preset"
    assert "llama-9" in msg and "llama-3.1-8b" in msg and "mixtral-8x7b" in msg


@pytest.mark.parametrize("block,field,path", [
    ("inference", "contextLength", "spec.inference.contextLength"),
    ("inference", "concurrency", "spec.inference.concurrency"),
    ("inference", "prefillChunkTokens", "spec.inference.prefillChunkTokens"),
    ("parallelism", "tensor", "spec.parallelism.tensor"),
    ("parallelism", "data", "spec.parallelism.data"),
    ("placement", "maxNodes", "spec.placement.maxNodes"),
])
@pytest.mark.parametrize("value", [0, -1])
def test_nonpositive_sizes(block, field, path, value):
    got, msg = one_error(dict(BASE, **{block: {field: value}}))
    assert got == path
    assert "greater than 0" in msg


@pytest.mark.parametrize("field", ["microBatchSize", "sequenceLength", "loraRank"])
def test_nonpositive_training_sizes(field):
    doc = dict(BASE, workload="training", training=dict(method="lora", **{field: 0}))
    assert one_error(doc)[0] == f"spec.training.{field}"


def test_zero_stage_range():
    doc = dict(BASE, workload="training", training=dict(zeroStage=4))
    assert one_error(doc)[0] == "spec.training.zeroStage"


def test_negative_architecture_field():
    doc = dict(BASE, model=dict(preset="llama-3.1-8b", architecture=dict(numLayers=-2)))
    assert one_error(doc)[0] == "spec.model.architecture.numLayers"


def test_headroom_range():
    assert one_error(dict(BASE, placement=dict(headroom=1.0)))[0] == "spec.placement.headroom"


def test_unknown_precision_lists_allowed():
    path, msg = one_error(dict(BASE, precision="fp6"))
    assert path == "spec.precision"
    assert "fp6" in msg
    for allowed in ("fp32", "bf16", "fp8", "int4", "nf4", "mxfp4", "nvfp4"):
        assert allowed in msg


def test_unknown_kv_precision():
    path, msg = one_error(dict(BASE, inference=dict(kvCachePrecision="int4")))
    assert path == "spec.inference.kvCachePrecision" and "fp8" in msg


def test_unknown_workload():
    path, msg = one_error(dict(BASE, workload="serving"))
    assert path == "spec.workload" and "inference" in msg and "training" in msg


def test_training_block_on_inference():
    path, msg = one_error(dict(BASE, training=dict(method="lora")))
    assert path == "spec.training" and "training" in msg


def test_inference_block_on_training():
    path, msg = one_error(dict(BASE, workload="training", inference=dict(contextLength=8)))
    assert "inference" in msg


def test_lora_rank_on_full_fine_tune():
    path, msg = one_error(dict(BASE, workload="training", training=dict(method="full", loraRank=8)))
    assert path == "spec.training.loraRank"
    assert msg == "training.loraRank is only allowed with method lora or qlora"


def test_lora_rank_default_and_given():
    s = parse_spec(dict(BASE, workload="training", training=dict(method="lora", loraRank=64)))
    assert s.training.rank == 64


def test_qlora_needs_4bit():
    path, msg = one_error(dict(BASE, workload="training", training=dict(method="qlora")))
    assert "nf4" in msg
    parse_spec(dict(BASE, workload="training", precision="nf4", training=dict(method="qlora")))


def test_full_fine_tune_of_quantised_refused():
    path, msg = one_error(dict(BASE, workload="training", precision="fp8", training={}))
    assert path == "spec.precision" and "fp32, bf16 or fp16" in msg and "qlora" in msg


@pytest.mark.parametrize("doc,path", [
    (dict(BASE, inference=dict(contextLenght=8192)), "spec.inference.contextLenght"),
    (dict(BASE, precison="fp8"), "spec.precison"),
    (dict(BASE, model=dict(preset="llama-3.1-8b", prest="x")), "spec.model.prest"),
    (dict(BASE, parallelism=dict(tensors=2)), "spec.parallelism.tensors"),
])
def test_unknown_field_typo(doc, path):
    got, msg = one_error(doc)
    assert got == path and msg == "unknown field"


def test_all_errors_at_once():
    errors = refused(dict(BASE, precision="fp6", inference=dict(contextLength=0, concurrency=-1)))
    assert {p for p, _ in errors} == {"spec.precision", "spec.inference.contextLength", "spec.inference.concurrency"}


@pytest.mark.parametrize("text,count", [("70B", 70_000_000_000), ("1.5T", 1_500_000_000_000),
                                        ("350M", 350_000_000), ("70e9", 70_000_000_000),
                                        (" 8b ", 8_000_000_000), (7e10, 70_000_000_000)])
def test_parameters_parsing(text, count):
    assert parse_spec(dict(model=dict(parameters=text), workload="inference")).model.parameters == count


@pytest.mark.parametrize("bad", ["seventy", "70 GB", "-70B", True, 0])
def test_bad_parameters(bad):
    path, msg = one_error(dict(model=dict(parameters=bad), workload="inference"))
    assert path == "spec.model.parameters"


def test_parameters_stands_alone():
    path, msg = one_error(dict(model=dict(parameters="70B", preset="llama-3.1-70b"), workload="inference"))
    assert path == "spec.model.parameters" and "parameters" in msg


def test_model_needs_a_source():
    path, msg = one_error(dict(model={}, workload="inference"))
    assert path == "spec.model" and "preset" in msg


def test_preset_and_hf_config_exclusive():
    path, msg = one_error(dict(model=dict(preset="llama-3.1-8b", huggingFaceConfig="c.json"), workload="inference"))
    assert path == "spec.model.huggingFaceConfig"


def test_missing_workload():
    assert one_error(dict(model=dict(preset="llama-3.1-8b")))[0] == "spec.workload"


def test_target_kind():
    parse_spec(dict(BASE, target=dict(kind="StatefulSet", name="vllm")))
    assert one_error(dict(BASE, target=dict(kind="Pod", name="x")))[0] == "spec.target.kind"
    assert one_error(dict(BASE, target=dict(kind="Job", name="")))[0] == "spec.target.name"


def test_every_model_source_has_a_label_for_the_model_column():
    def label(model):
        return parse_spec({"model": model, "workload": "inference"}).model.label
    assert label({"preset": "llama-3.1-8b"}) == "llama-3.1-8b"
    assert label({"huggingFaceConfig": "tiny-llama"}) == "config.json from tiny-llama"
    assert label({"parameters": "70B"}) == "70B parameters"
    arch = {"num_layers": 16, "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256}
    assert label({"architecture": arch}) == "custom (16 layers x 2048)"


@pytest.mark.parametrize("workload, par", [("inference", {"tensor": 2, "expert": 8}),
                                           ("training", {"data": 2, "expert": 8})])
def test_expert_parallel_adds_no_gpus(workload, par):
    # expert 8 over 2 GPUs: every engine builds its expert group from the tensor and data ranks
    doc = {"model": {"preset": "qwen3-30b-a3b"}, "workload": workload, "parallelism": par,
           **({"training": {"framework": "fsdp"}} if workload == "training" else {})}
    with pytest.raises(InvalidWorkload, match=r"spec\.parallelism\.expert: parallelism\.expert must divide"):
        parse_spec(doc)
    parse_spec({**doc, "parallelism": {**par, "expert": 2}})


def test_megatron_experts_split_over_expert_tensor_times_expert():
    # tensor 2 x data 2 with expert 4: expert tensor defaults to 2, so 2 x 4 ranks do not divide the 4 GPUs
    doc = {"model": {"preset": "qwen3-30b-a3b"}, "workload": "training", "training": {"framework": "megatron"},
           "parallelism": {"tensor": 2, "data": 2, "expert": 4}}
    with pytest.raises(InvalidWorkload, match="with framework megatron, parallelism.expert must divide "
                                              "parallelism.data"):
        parse_spec(doc)
    parse_spec({**doc, "training": {"framework": "megatron", "expertTensorParallel": 1}})
    parse_spec({**doc, "training": {"framework": "fsdp"}})
