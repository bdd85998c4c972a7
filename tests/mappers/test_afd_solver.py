"""The AFD planner (sim/afd_solver.py) and its study (explore/studies/afd.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from decodex.core.errors import ArgumentError, DecodexError
from decodex.explore.studies.afd import break_even_scale, compare_best
from decodex.sim.afd_solver import AfdLayout, afd_system, candidate_layouts, plan_layout, solve_afd, usd_per_hour
from decodex.sim.simulate import simulate

MODEL, CONTEXT, TPOT = "step3", 4096, 0.05


def test_layout_becomes_a_system_of_roles() -> None:
    system = afd_system(AfdLayout("h20", "h800", 3, 1, 8, 2))
    attention, ffn = system.groups
    assert (attention.device.name, attention.count, attention.role, attention.instance_devices) == ("h20", 24,
                                                                                                     "attention", 8)
    assert (ffn.device.name, ffn.count, ffn.role) == ("h800", 8, "ffn")
    assert system.mapper_options["ffn_devices"] == 8 and system.mapper_options["microbatches"] == 2
    colocated = afd_system(AfdLayout("h800", "h800", 2, 0))
    assert [(g.role, g.count) for g in colocated.groups] == [("colocated", 16)]


def test_price_of_a_mix_by_hand() -> None:
    # H20 $0.80/h and H800 $2.00/h (catalog): 3 x 8 H20 + 1 x 8 H800
    assert usd_per_hour(AfdLayout("h20", "h800", 3, 1)) == pytest.approx(24 * 0.80 + 8 * 2.00)


def test_planned_batch_is_the_largest_within_the_tpot_target() -> None:
    layout = AfdLayout("h800", "h800", 1, 1, 8, 2)
    row = plan_layout(MODEL, layout, context=CONTEXT, tpot_s=TPOT)
    assert row["feasible"] and row["tpot_s"] <= TPOT
    step = layout.microbatches * layout.attention_instances * layout.instance_devices
    assert row["batch"] % step == 0
    system = afd_system(layout)
    try:
        bigger = simulate(MODEL, system, int(row["batch"]) + step, context=CONTEXT, precision="fp8")
        assert bigger.step_time_s > TPOT or not bigger.fits
    except DecodexError:
        pass  # the next batch does not fit at all
    assert row["tokens_per_s_per_device"] == pytest.approx(row["batch"] / row["tpot_s"] / layout.devices)
    assert row["usd_per_mtok"] == pytest.approx(1e6 / (row["tokens_per_s"] * 3600 / row["usd_per_hour"]))


def test_more_nic_bandwidth_never_lowers_a_layouts_throughput() -> None:
    values = [plan_layout(MODEL, AfdLayout("h800", "h800", 1, 1, 8, 2, nic_scale=s), context=CONTEXT,
                          tpot_s=TPOT)["tokens_per_s_per_device"] for s in (1 / 32, 0.25, 1.0)]
    assert values == sorted(values)


def test_solver_orders_by_objective_and_keeps_infeasible_layouts_with_reasons() -> None:
    layouts = [AfdLayout("h800", "h800", 1, 1, 8, 2), AfdLayout("h20", "h800", 2, 1, 8, 2),
               AfdLayout("h800", "h800", 4, 0, 8, 2)]  # EP32 cannot split step3's 48 experts
    for objective in ("tokens_per_s_per_device", "tokens_per_usd"):
        frame = solve_afd(MODEL, context=CONTEXT, tpot_s=TPOT, layouts=layouts, objective=objective)
        feasible = frame[frame["feasible"]]
        assert list(feasible[objective]) == sorted(feasible[objective], reverse=True)
        last = frame.iloc[-1]
        assert not last["feasible"] and "48" in last["reason"]
    with pytest.raises(ArgumentError, match="objective"):
        solve_afd(MODEL, context=CONTEXT, tpot_s=TPOT, layouts=layouts, objective="speed")


def test_candidate_layouts_cover_pairs_counts_and_baselines() -> None:
    layouts = candidate_layouts(devices=("h800", "h20"), attention_instances=(1, 2), ffn_instances=(1,),
                                microbatches=(2, 3), colocated_instances=(1, 2))
    assert len(layouts) == 4 * 2 * 1 * 2 + 2 * 2
    assert sum(layout.colocated for layout in layouts) == 4
    with pytest.raises(ArgumentError):
        candidate_layouts(ffn_instances=(0,))


def test_compare_best_and_break_even_by_hand() -> None:
    frame = pd.DataFrame({"ratio": ["1A1F", "2A1F", "colocated", "colocated"], "feasible": [True, True, True, False],
                          "tokens_per_s_per_device": [100.0, 150.0, 120.0, float("nan")],
                          "attention_instances": [1, 2, 2, 4], "ffn_instances": [1, 1, 0, 0],
                          "microbatches": [2, 3, 2, 2], "batch": [10, 20, 30, 40], "devices": [16, 24, 16, 32]})
    best = compare_best(frame)
    assert best["best_ratio"] == "2A1F" and best["gain"] == pytest.approx(150 / 120)
    study = pd.DataFrame({"nic_scale": [0.25, 0.5, 1.0], "gain": [0.5, 0.8, 1.6]})
    # log-linear between 0.5 (gain 0.8) and 1.0 (gain 1.6): crossing at 0.5 * 2 ** (0.2 / 0.8)
    assert break_even_scale(study) == pytest.approx(0.5 * 2 ** 0.25)
    assert math.isnan(break_even_scale(pd.DataFrame({"nic_scale": [1.0, 2.0], "gain": [1.2, 1.5]})))


def test_scale_link_scales_only_that_link() -> None:
    from decodex.hw_models.system import load_system, scale_link

    base = load_system("step3-2a2f-h800")
    scaled = scale_link(base, "nic", 0.5)
    for old, new in zip(base.groups, scaled.groups, strict=True):
        assert new.device.links["nic"].bandwidth_bytes_per_s == pytest.approx(
            0.5 * old.device.links["nic"].bandwidth_bytes_per_s)
        assert new.device.links["nvlink"] == old.device.links["nvlink"]
    assert scale_link(base, "nic", 1.0) is base
    with pytest.raises(ArgumentError):
        scale_link(base, "nic", 0.0)


def test_studies_report_each_solve_for_the_progress_line() -> None:
    """`decodex study afd` draws its progress line from the studies' ``on_solved`` calls: one per
    context and one per NIC multiple."""
    from decodex.explore.studies.afd import context_study, nic_study
    from decodex.sim.afd_solver import candidate_layouts

    layouts = candidate_layouts()[:2]
    calls: list[int] = []
    context = context_study("step3", (2048, 4096), layouts=layouts, on_solved=lambda: calls.append(1))
    nic = nic_study("step3", (0.5, 1.0), layouts=layouts, on_solved=lambda: calls.append(2))
    assert calls == [1, 1, 2, 2] and len(context) == 2 and len(nic) == 2
