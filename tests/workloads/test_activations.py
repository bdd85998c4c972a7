"""FFN gating follows the model family, the activation name only its element-wise FLOPs.

Issue [reliability] item 3: a Llama config with ``hidden_act`` other than silu (``swish``,
``gelu``, ``gelu_pytorch_tanh`` ...) was modelled as a 2-matrix FFN (weights 23 % low).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from decodex.core.errors import SpecError
from decodex.sim.estimate import estimate
from decodex.workloads.batch import Batch
from decodex.workloads.block_config import (
    ACTIVATION_ALIASES,
    ACTIVATION_FLOPS_PER_ELEMENT,
    FFNConfig,
    canonical_activation,
    known_activations,
)
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import CATALOG_DIR, list_models, load_model
from decodex.workloads.graph import Graph
from decodex.workloads.hf_config import load_model_config, model_from_dict
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import Op

# Every name of transformers' ACT2CLS (src/transformers/activations.py, 24 keys).
HF_ACT2FN_NAMES = ("gelu", "gelu_10", "gelu_fast", "gelu_new", "gelu_python", "gelu_pytorch_tanh",
                   "gelu_python_tanh", "gelu_accurate", "hardswish", "laplace", "leaky_relu", "linear", "mish",
                   "quick_gelu", "relu", "relu2", "relu6", "sigmoid", "silu", "sqrtsoftplus", "swish", "tanh",
                   "prelu", "xielu")

# Meta-Llama-3-8B shapes.
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, VOCAB = 4096, 14336, 32, 32, 8, 128256


def llama8b(**extra: Any) -> dict[str, Any]:
    """A Llama-3-8B-shaped config.json mapping, with ``extra`` fields overriding."""
    base: dict[str, Any] = {"model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": FFN,
                            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                            "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "max_position_embeddings": 8192,
                            "tie_word_embeddings": False, "hidden_act": "silu"}
    return {**base, **extra}


def llama8b_parameters(ffn_matrices: int) -> int:
    """Parameters of the Llama-8B shape, by hand, with ``ffn_matrices`` FFN matrices per layer."""
    head_dim = HIDDEN // HEADS  # 128
    attention = HIDDEN * HEADS * head_dim + 2 * HIDDEN * KV_HEADS * head_dim + HEADS * head_dim * HIDDEN
    ffn = ffn_matrices * HIDDEN * FFN
    norms = 2 * HIDDEN  # attention and FFN RMSNorm scales
    embedding_and_head = 2 * VOCAB * HIDDEN  # untied
    return embedding_and_head + LAYERS * (attention + ffn + norms) + HIDDEN  # + final norm


# bf16 weights a decode step of 8 tokens reads: every parameter but the embedding table (2 B each),
# plus the 8 embedding rows it gathers: 2 * (8,030,261,248 - 128,256 * 4096) + 8 * 4096 * 2.
DECODE_WEIGHT_BYTES = 2 * (llama8b_parameters(3) - VOCAB * HIDDEN) + 8 * HIDDEN * 2
assert DECODE_WEIGHT_BYTES == 15_009_914_880


def op_named(graph: Graph, template: str, name: str) -> Op:
    """The op ``name`` of layer template ``template``."""
    for t, op in graph.ops():
        if t.name == template and op.name == name:
            return op
    raise KeyError(name)


def decode_graph(model: ModelConfig) -> Graph:
    """A decode step of 8 requests with 256 cached tokens each, one device."""
    return build_step_graph(model, Batch.decode(8, 256))


# --- gating is the family's --------------------------------------------------------------------

def test_llama_8b_parameter_count_by_hand_is_gated() -> None:
    assert llama8b_parameters(3) == 8_030_261_248  # Meta-Llama-3-8B's published count
    for act in ("silu", "swish", "gelu", "gelu_pytorch_tanh", "relu"):
        model = model_from_dict(llama8b(hidden_act=act))
        assert model.ffn is not None and model.ffn.gated and model.ffn.num_matrices == 3
        assert model.parameter_count() == llama8b_parameters(3)
    # the defect: 2 matrices would have been 1,879,048,192 parameters (23 %) low
    assert llama8b_parameters(3) - llama8b_parameters(2) == LAYERS * HIDDEN * FFN == 1_879_048_192


def test_swish_is_silu_in_every_result() -> None:
    silu, swish = model_from_dict(llama8b(hidden_act="silu")), model_from_dict(llama8b(hidden_act="swish"))
    assert swish.ffn is not None and swish.ffn.activation == "silu"
    assert swish.parameter_count() == silu.parameter_count() == 8_030_261_248
    g_silu, g_swish = decode_graph(silu), decode_graph(swish)
    assert g_swish.total("weight_bytes") == g_silu.total("weight_bytes")
    assert g_swish.total("flops") == g_silu.total("flops")
    assert g_silu.total("weight_bytes") == DECODE_WEIGHT_BYTES
    t_silu = estimate(silu, "h100-sxm", 8, context=256).step_time_s
    t_swish = estimate(swish, "h100-sxm", 8, context=256).step_time_s
    assert t_swish == t_silu


@pytest.mark.parametrize("act", ["gelu", "gelu_pytorch_tanh", "gelu_new"])
def test_gelu_llama_keeps_the_gated_weights(act: str) -> None:
    silu, gelu = model_from_dict(llama8b()), model_from_dict(llama8b(hidden_act=act))
    assert gelu.parameter_count() == silu.parameter_count() == llama8b_parameters(3)
    g_silu, g_gelu = decode_graph(silu), decode_graph(gelu)
    assert g_gelu.total("weight_bytes") == g_silu.total("weight_bytes") == DECODE_WEIGHT_BYTES
    assert op_named(g_gelu, "dense_layer", "gate_up_proj").weight_bytes == 2 * FFN * HIDDEN * 2
    # only the activation's FLOPs differ: GELU 8 vs SiLU 4 per element, 8 tokens x 14336 x 32 layers
    assert g_gelu.total("flops") - g_silu.total("flops") == (8 - 4) * 8 * FFN * LAYERS == 14_680_064


def test_opt_stays_two_matrices_whatever_its_activation() -> None:
    cfg = {"model_type": "opt", "hidden_size": 256, "ffn_dim": 1024, "num_hidden_layers": 2,
           "num_attention_heads": 4, "vocab_size": 100}
    counts = set()
    for act in ("relu", "gelu", "silu", "swish"):
        model = model_from_dict({**cfg, "activation_function": act})
        assert model.ffn is not None and not model.ffn.gated and model.ffn.num_matrices == 2
        # fc1 and fc2 with biases: 2 * 256 * 1024 + 1024 + 256
        assert model.ffn.parameter_count(256) == 525_568
        counts.add(model.parameter_count())
        names = {op.name for _, op in decode_graph(model).ops()}
        assert "up_proj" in names and "gate_up_proj" not in names
    assert len(counts) == 1
    assert load_model("opt-6.7b").parameter_count() == 6_658_465_792


def test_gpt2_stays_two_matrices() -> None:
    cfg = {"model_type": "gpt2", "n_embd": 256, "n_layer": 2, "n_head": 4, "vocab_size": 100}
    for act in ("gelu_new", "gelu", "relu"):
        model = model_from_dict({**cfg, "activation_function": act})
        assert model.ffn is not None and not model.ffn.gated and model.ffn.intermediate_size == 1024


def test_moe_families_keep_gated_experts_for_any_activation() -> None:
    mixtral = {"model_type": "mixtral", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "num_local_experts": 4,
               "num_experts_per_tok": 2}
    for act in ("silu", "swish", "gelu"):
        model = model_from_dict({**mixtral, "hidden_act": act})
        assert model.moe is not None and model.moe.expert.gated
        # router 256 x 4 + 4 experts x 3 x 256 x 512
        assert model.moe.parameter_count(256) == 256 * 4 + 4 * 3 * 256 * 512 == 1_573_888


def test_glam_gating_comes_from_its_fields_not_the_activation() -> None:
    glam = load_model("glam-143b")
    assert glam.ffn is not None and glam.ffn.gated and glam.ffn.activation == "gelu"
    assert glam.moe is not None and not glam.moe.expert.gated
    data = json.loads((CATALOG_DIR / "glam-143b.json").read_text())
    relu = model_from_dict({**data, "hidden_act": "relu"})
    assert relu.parameter_count() == glam.parameter_count() == 143_860_699_136
    # geglu names a gated pair: fine for the gated dense FFN, not for GLaM's plain experts
    with pytest.raises(SpecError) as info:
        model_from_dict({**data, "hidden_act": "geglu"}, source="glam.json")
    assert info.value.field == "hidden_act" and "not gated" in info.value.message


# --- activation names ----------------------------------------------------------------------------

@pytest.mark.parametrize("act", HF_ACT2FN_NAMES)
def test_every_hf_activation_is_accepted_with_its_flops(act: str) -> None:
    model = model_from_dict(llama8b(hidden_act=act))
    assert model.ffn is not None and model.ffn.gated
    canonical = ACTIVATION_ALIASES.get(act, act)
    assert model.ffn.activation == canonical
    assert model.parameter_count() == 8_030_261_248
    op = op_named(decode_graph(model), "dense_layer", "act")
    # activation + the gate multiply, on 8 tokens x 14336
    assert op.flops == (ACTIVATION_FLOPS_PER_ELEMENT[canonical] + 1) * 8 * FFN


def test_flops_per_element_by_hand() -> None:
    expected = {"relu": 1, "silu": 4, "swish": 4, "gelu": 8, "gelu_new": 8, "gelu_pytorch_tanh": 8,
                "gelu_python": 8, "quick_gelu": 4, "sigmoid": 4, "tanh": 1, "relu2": 2, "relu6": 2, "linear": 0,
                "mish": 5, "gelu_10": 10}
    for name, fpe in expected.items():
        assert FFNConfig(1024, gated=False, activation=name).activation_flops_per_element == fpe
    assert canonical_activation("swiglu", gated=True) == "silu"
    assert canonical_activation("geglu", gated=True) == "gelu"
    assert set(HF_ACT2FN_NAMES) <= set(known_activations(gated=False))
    assert {"swiglu", "geglu"} <= set(known_activations(gated=True)) - set(known_activations(gated=False))


def test_gemma_style_gelu_pytorch_tanh_op() -> None:
    model = model_from_dict(llama8b(hidden_act="gelu_pytorch_tanh"))
    op = op_named(decode_graph(model), "dense_layer", "act")
    assert op.flops == (8 + 1) * 8 * FFN == 1_032_192


def test_unknown_activation_is_a_spec_error_from_a_dict() -> None:
    with pytest.raises(SpecError) as info:
        model_from_dict(llama8b(hidden_act="banana"), source="cfg.json")
    err = info.value
    assert err.source == "cfg.json" and err.field == "hidden_act"
    assert "'banana'" in str(err) and "cfg.json: hidden_act" in str(err)
    for name in ("silu", "swish", "gelu", "gelu_pytorch_tanh", "relu", "swiglu"):
        assert name in err.message


def test_unknown_activation_is_a_spec_error_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "weird-llama.json"
    path.write_text(json.dumps(llama8b(hidden_act="banana")))
    with pytest.raises(SpecError) as info:
        load_model_config(path)
    assert info.value.source == str(path) and info.value.field == "hidden_act"
    assert "gelu_new" in info.value.message
    with pytest.raises(SpecError, match="hidden_act"):
        load_model(str(path))


def test_unknown_or_gated_activation_for_opt_and_gpt2_names_activation_function() -> None:
    opt = {"model_type": "opt", "hidden_size": 256, "ffn_dim": 1024, "num_hidden_layers": 2,
           "num_attention_heads": 4, "vocab_size": 100}
    gpt2 = {"model_type": "gpt2", "n_embd": 256, "n_layer": 2, "n_head": 4, "vocab_size": 100}
    for cfg in (opt, gpt2):
        with pytest.raises(SpecError) as info:
            model_from_dict({**cfg, "activation_function": "banana"}, source="x.json")
        assert info.value.field == "activation_function" and "relu" in info.value.message
        with pytest.raises(SpecError) as info:
            model_from_dict({**cfg, "activation_function": "swiglu"}, source="x.json")
        assert info.value.field == "activation_function" and "not gated" in info.value.message
        assert "swiglu" not in info.value.message.split("known:")[1]


def test_activation_must_be_a_string() -> None:
    with pytest.raises(SpecError, match=r"hidden_act.*must be a string"):
        model_from_dict(llama8b(hidden_act=3))


def test_ffn_config_rejects_an_unknown_activation() -> None:
    with pytest.raises(ValueError, match="unknown activation 'banana'"):
        FFNConfig(1024, gated=True, activation="banana")
    assert FFNConfig(1024, gated=True, activation="swish").activation == "silu"


# --- catalog unchanged ---------------------------------------------------------------------------

# Recorded before the change: total and active parameters, and the decode step of 8 requests with
# 256 cached tokens on one device (FLOPs, weight bytes in bf16).
CATALOG_BEFORE: dict[str, tuple[int, int, int, int]] = {
    "deepseek-v3": (671_026_404_352, 37_552_282_624, 620_984_327_680, 326_482_425_856),
    "glam-143b": (143_860_699_136, 10_716_712_960, 172_570_648_576, 75_120_582_656),
    "gpt3-13b": (12_853_386_240, 12_853_386_240, 207_206_932_480, 25_685_964_800),
    "gpt3-175b": (174_604_259_328, 174_604_259_328, 2_803_175_030_784, 349_158_580_224),
    "gpt3-30b": (29_974_418_432, 29_974_418_432, 482_246_238_208, 59_919_706_112),
    "gpt3-7b": (6_658_404_352, 6_658_404_352, 107_501_420_544, 13_300_162_560),
    "grok-1": (315_684_034_560, 83_755_800_576, 1_343_356_669_952, 568_554_270_720),
    "llama2-13b": (13_015_864_320, 13_015_864_320, 207_358_566_400, 25_704_130_560),
    "llama2-70b": (68_976_648_192, 68_976_648_192, 1_104_962_846_720, 137_429_139_456),
    "llama2-7b": (6_738_415_616, 6_738_415_616, 106_822_205_440, 13_214_752_768),
    "llama3-70b": (70_553_706_496, 70_553_706_496, 1_117_579_313_152, 139_006_197_760),
    "llama3-8b": (8_030_261_248, 8_030_261_248, 121_185_402_880, 15_009_914_880),
    # added later (issue 26): draft models (Llama 3.2 1B's card says 1.23B parameters, vicuna-68m's name 68M) and
    # Spec-Bench's Vicuna targets (LLaMA 7B/13B/33B shapes: 6.7B, 13.0B, 32.5B parameters)
    "llama3.2-1b": (1_235_814_400, 1_235_814_400, 20_050_362_368, 2_471_661_568),
    "vicuna-68m": (68_030_208, 68_030_208, 708_311_040, 86_920_704),
    "vicuna-7b": (6_738_415_616, 6_738_415_616, 106_822_205_440, 13_214_752_768),
    "vicuna-13b": (13_015_864_320, 13_015_864_320, 207_358_566_400, 25_704_130_560),
    "vicuna-33b": (32_528_943_616, 32_528_943_616, 520_421_068_800, 64_632_009_728),
    "llama3.1-405b": (405_853_388_800, 405_853_388_800, 6_477_430_669_312, 807_504_347_136),
    "llama3.1-70b": (70_553_706_496, 70_553_706_496, 1_117_579_313_152, 139_006_197_760),
    "llama3.1-8b": (8_030_261_248, 8_030_261_248, 121_185_402_880, 15_009_914_880),
    "mixtral-8x22b": (140_620_634_112, 39_152_031_744, 626_142_676_480, 253_065_080_832),
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248, 205_069_920_256, 82_221_539_328),
    "opt-6.7b": (6_658_465_792, 6_658_465_792, 107_473_043_456, 13_300_285_440),
    "opt-66b": (65_719_683_072, 65_719_683_072, 1_056_035_708_928, 131_401_912_320),
    "qwen3-235b-a22b": (235_093_634_560, 22_190_763_520, 351_492_306_944, 198_019_996_672),
    "step3": (316_294_538_240, 38_841_328_640, 614_969_768_960, 277_760_360_448),
}


def test_catalog_list_is_the_recorded_one() -> None:
    assert sorted(list_models()) == sorted(CATALOG_BEFORE)


@pytest.mark.parametrize("name", sorted(CATALOG_BEFORE))
def test_catalog_model_unchanged(name: str) -> None:
    total, active, flops, weight_bytes = CATALOG_BEFORE[name]
    model = load_model(name)
    assert model.parameter_count() == total
    assert model.parameter_count(active=True) == active
    graph = decode_graph(model)
    assert graph.total("flops") == flops
    assert graph.total("weight_bytes") == weight_bytes
