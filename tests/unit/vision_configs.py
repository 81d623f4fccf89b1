"""Hugging Face config.json dicts shared by the vision tests (tests/unit runs with its own folder on sys.path)."""

QWEN3_TEXT = {"model_type": "qwen3_vl_text", "num_hidden_layers": 36, "hidden_size": 4096, "intermediate_size": 12288,
              "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
              "hidden_act": "silu", "max_position_embeddings": 262144}
# Qwen/Qwen3-VL-8B-Instruct config.json
QWEN3_VL_8B = {"model_type": "qwen3_vl", "text_config": QWEN3_TEXT,
               "vision_config": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
                                 "hidden_act": "gelu_pytorch_tanh", "in_channels": 3, "num_heads": 16,
                                 "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2,
                                 "temporal_patch_size": 2, "deepstack_visual_indexes": [8, 16, 24]}}
