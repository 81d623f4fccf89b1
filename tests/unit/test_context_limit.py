"""A context beyond the model's maximum is refused, naming the field, as vLLM refuses such a max_model_len."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate, refusal
from rackfit.models import presets, resolve
from rackfit.models.hf_config import max_context_from_hf_config
from rackfit.spec import ModelSource, parse_spec


def serving(context: int, **model) -> dict:
    return dict(model=model or dict(preset="llama-3.1-8b"), workload="inference",
                inference=dict(contextLength=context))


@pytest.mark.parametrize("preset", sorted(presets()))
def test_every_preset_states_its_maximum_and_a_context_past_it_is_refused(preset):
    longest = resolve(ModelSource(preset=preset)).max_position_embeddings
    assert longest > 0
    estimate(parse_spec(serving(longest, preset=preset)))  # exactly the maximum is planned
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(serving(longest + 1, preset=preset)))
    (field, message), = e.value.errors
    assert field == "spec.inference.contextLength"
    assert str(longest) in message and preset in message


def test_an_absurd_context_is_refused_not_planned():
    with pytest.raises(InvalidWorkload):
        estimate(parse_spec(serving(99_999_999_999)))


def test_training_sequences_are_not_refused():
    """Training runtimes feed whatever length they are given (RoPE extrapolates); only engines refuse."""
    spec = parse_spec(dict(model=dict(preset="qwen2.5-7b"), workload="training",
                           training=dict(method="lora", sequenceLength=65536)))
    assert estimate(spec).total_bytes > 0


@pytest.mark.parametrize(("config", "expected"), [
    (dict(max_position_embeddings=131072, rope_scaling=dict(rope_type="llama3", factor=8.0,
                                                            original_max_position_embeddings=8192)), 131072),
    (dict(max_position_embeddings=163840, rope_scaling=dict(type="yarn", factor=40,
                                                            original_max_position_embeddings=4096)), 163840),
    (dict(max_position_embeddings=32768, rope_scaling=dict(type="yarn", factor=4.0,
                                                           original_max_position_embeddings=32768)), 131072),
    (dict(max_position_embeddings=4096, rope_scaling=dict(type="linear", factor=2.0)), 8192),
    (dict(max_position_embeddings=4096, rope_scaling=dict(type="longrope", factor=32.0)), 4096),
    (dict(max_position_embeddings=4096, seq_length=2048), 2048),  # the smallest length key wins
    (dict(n_positions=1024), 1024),
    ({}, None),
])
def test_max_context_from_config_json_as_vllm_derives_it(config, expected):
    assert max_context_from_hf_config(config) == expected


def test_a_config_json_maximum_is_enforced_and_named():
    cfg = dict(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4,
               vocab_size=1000, max_position_embeddings=2048, rope_scaling=dict(type="linear", factor=2.0))
    spec = parse_spec(serving(4097, huggingFaceConfig="config.json"))
    with pytest.raises(InvalidWorkload) as e:
        estimate(spec, hf_config=cfg)
    assert "4096" in e.value.errors[0][1] and "max_position_embeddings" in e.value.errors[0][1]
    assert estimate(parse_spec(serving(4096, huggingFaceConfig="config.json")), hf_config=cfg).total_bytes > 0


def test_the_largest_context_that_fits_is_capped_by_the_maximum():
    assert "about 131072 tokens" in refusal("vllm", 131072, 400_000, 400_000, max_context=131072)
    assert "about 90000 tokens" in refusal("vllm", 131072, 90_000, 90_000, max_context=131072)


# deepseek-coder v1's config.json (6.7b): 16,384 positions with a linear rope_scaling factor of 4
DEEPSEEK_CODER_6_7B = dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                           num_key_value_heads=32, vocab_size=32256, max_position_embeddings=16384,
                           rope_scaling=dict(type="linear", factor=4.0), tie_word_embeddings=False)


def test_a_linear_rope_factor_sets_v0s_default_length_and_its_profile():
    """vLLM 0.4.x with no --max-model-len serves deepseek-coder at 65,536 tokens (_get_and_verify_max_len applies the
    linear factor), and V0's profile runs max(max_model_len, 2048) tokens: on two T4 that no longer fits (S655's
    refusal), where the 16,384 the config names would."""
    t4 = GPU(model="T4", product="T4", memoryGB=16, memoryMiB=15360, architecture="turing")
    assert max_context_from_hf_config(DEEPSEEK_CODER_6_7B) == 65536

    def run(context: int):
        spec = parse_spec(dict(model=dict(huggingFaceConfig="config.json"), workload="inference", precision="fp16",
                               parallelism=dict(tensor=2),
                               inference=dict(contextLength=context, engineVersion="0.4.3")))
        return estimate(spec, gpu=t4, hf_config=DEEPSEEK_CODER_6_7B)

    derived, named = run(65536), run(16384)
    assert derived.engine.max_num_batched_tokens == 65536 and named.engine.max_num_batched_tokens == 16384
    assert derived.breakdown.activations_bytes > 3 * named.breakdown.activations_bytes
    assert derived.engine_starts is False and named.engine_starts is True
