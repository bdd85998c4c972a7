"""Model configs: catalog, parameter counts, HF defaults and errors."""

from __future__ import annotations

import json

import pytest

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError, SpecError
from decodex.workloads.catalog import list_models, load_model
from decodex.workloads.hf_config import model_from_dict

REQUIRED_MODELS = {
    "llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "llama3-70b", "opt-6.7b", "opt-66b", "gpt3-7b",
    "gpt3-13b", "gpt3-30b", "gpt3-175b", "mixtral-8x7b", "mixtral-8x22b", "glam-143b", "grok-1",
    "deepseek-v3", "qwen3-235b-a22b", "step3",
}

# Parameter counts from the published configs (workloads/catalog/FIELDS.md, counted independently
# of this parser). Differences noted there: DeepSeek-V3's 14,848 router-bias parameters, Grok-1's
# two extra norms per layer and OPT's two extra position rows are not weights the graph moves.
PUBLISHED = {
    "llama2-7b": 6_738_415_616, "llama2-13b": 13_015_864_320, "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248, "llama3-70b": 70_553_706_496, "opt-6.7b": 6_658_473_984,
    "opt-66b": 65_719_701_504, "gpt3-7b": 6_658_404_352, "gpt3-13b": 12_853_386_240,
    "gpt3-30b": 29_974_418_432, "gpt3-175b": 174_604_259_328, "mixtral-8x7b": 46_702_792_704,
    "mixtral-8x22b": 140_620_634_112, "glam-143b": 143_860_699_136, "grok-1": 315_684_820_992,
    "deepseek-v3": 671_026_419_200, "qwen3-235b-a22b": 235_093_634_560, "step3": 316_294_538_240,
}


def test_catalog_has_every_required_model() -> None:
    assert set(list_models()) >= REQUIRED_MODELS


@pytest.mark.parametrize("name", sorted(REQUIRED_MODELS))
def test_parameter_count_matches_published_config(name: str) -> None:
    model = load_model(name)
    assert model.parameter_count() == pytest.approx(PUBLISHED[name], rel=1e-5)


def test_llama2_7b_parameter_count_is_exact() -> None:
    assert load_model("llama2-7b").parameter_count() == 6_738_415_616


def test_llama3_70b_kv_cache_per_token_bf16() -> None:
    # 80 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes
    assert load_model("llama3-70b").kv_cache_bytes_per_token(DType.BF16) == 327_680


def test_mla_and_mfa_kv_cache_per_token() -> None:
    # DeepSeek-V3: latent 512 + rope 64 per layer; Step-3: one K and one V head of 256, FP8 -> 512 B
    assert load_model("deepseek-v3").attention.kv_elements_per_token == 576
    step3 = load_model("step3")
    assert step3.kv_cache_bytes_per_token(DType.FP8) / step3.num_layers == 512


@pytest.mark.parametrize(("name", "label"), [("llama2-7b", "MHA dense"), ("llama3-70b", "GQA dense"),
                                             ("deepseek-v3", "MLA MoE"), ("step3", "MFA MoE"),
                                             ("mixtral-8x7b", "GQA MoE")])
def test_families(name: str, label: str) -> None:
    assert load_model(name).family == label


def test_moe_layer_selection() -> None:
    ds = load_model("deepseek-v3")
    assert ds.layer_kinds[:3] == ("dense",) * 3 and ds.num_moe_layers == 58
    step3 = load_model("step3")
    assert step3.num_moe_layers == 56 and step3.layer_kinds[60] == "dense"
    assert load_model("glam-143b").num_moe_layers == 16


def test_active_parameters_of_moe() -> None:
    assert load_model("mixtral-8x7b").parameter_count(active=True) == pytest.approx(12.9e9, rel=0.01)
    assert load_model("deepseek-v3").parameter_count(active=True) == pytest.approx(37.5e9, rel=0.01)


def test_hf_defaults_for_missing_optional_fields() -> None:
    cfg = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
           "num_attention_heads": 8, "vocab_size": 1000}
    model = model_from_dict(cfg)
    assert model.attention.num_kv_heads == 8
    assert model.attention.head_dim == 64
    assert not model.tie_word_embeddings


def test_unknown_model_type_is_a_clear_error() -> None:
    with pytest.raises(SpecError, match="unknown model_type 'bert'"):
        model_from_dict({"model_type": "bert"}, source="x.json")


def test_missing_required_field_names_file_and_field() -> None:
    with pytest.raises(SpecError) as info:
        model_from_dict({"model_type": "llama", "hidden_size": 512}, source="cfg.json")
    assert "cfg.json" in str(info.value) and "num_hidden_layers" in str(info.value)


def test_out_of_range_value_names_range() -> None:
    cfg = {"model_type": "llama", "hidden_size": -5, "intermediate_size": 1024, "num_hidden_layers": 2,
           "num_attention_heads": 8, "vocab_size": 1000}
    with pytest.raises(SpecError, match=r"hidden_size.*outside the allowed range"):
        model_from_dict(cfg)


def test_kv_heads_must_divide_heads() -> None:
    cfg = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 2,
           "num_attention_heads": 8, "num_key_value_heads": 3, "vocab_size": 1000}
    with pytest.raises(SpecError, match="num_key_value_heads"):
        model_from_dict(cfg)


def test_load_from_path_and_bad_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "tiny.json"
    good.write_text(json.dumps({"model_type": "mistral", "hidden_size": 256, "intermediate_size": 512,
                                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                "vocab_size": 100, "_source": "test"}))
    model = load_model(str(good))
    assert model.name == "tiny" and model.attention.label == "GQA"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_model(str(bad))
    with pytest.raises(ArgumentError, match="unknown model"):
        load_model("no-such-model")


def _small(model_type: str, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {"model_type": model_type, "hidden_size": 256, "intermediate_size": 512,
                               "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                               "vocab_size": 100}
    return {**base, **extra}


def test_qwen_families_carry_their_quirks() -> None:
    qwen2 = model_from_dict(_small("qwen2"))
    assert qwen2.attention.qkv_bias and not qwen2.attention.out_bias
    assert model_from_dict(_small("qwen3", head_dim=128)).attention.qk_norm
    moe = model_from_dict(_small("qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                                 decoder_sparse_step=2, mlp_only_layers=[3]))
    assert moe.layer_kinds == ("dense", "moe", "dense", "dense")


def test_gpt2_and_opt_shapes() -> None:
    gpt = load_model("gpt3-175b")
    assert (gpt.num_layers, gpt.hidden_size, gpt.attention.num_heads) == (96, 12288, 96)
    assert gpt.ffn is not None and not gpt.ffn.gated and gpt.positional == "learned"
    opt = load_model("opt-66b")
    assert opt.norm == "layernorm" and opt.ffn is not None and opt.ffn.activation == "relu"
