"""Attention-FFN disaggregation: Step-3 decode with attention on one pool of H800s and the FFN on
another, ping-ponging micro-batches over the network (StepFun's Step-3 layout).

Run: python examples/api/afd.py (simulated times in s)."""

import decodex as dx


def main() -> dict[str, float]:
    """Step time, throughput and per-device throughput of step3 on step3-2a2f-h800 at batch 64."""
    r = dx.simulate("step3", "step3-2a2f-h800", 64, context=4096, precision="fp8")
    print(f"step3 on step3-2a2f-h800: step {r.step_time_s * 1e3:.2f} ms, {r.tokens_per_s:,.0f} tokens/s on "
          f"{r.devices} devices ({r.tokens_per_s / r.devices:,.0f} per device)")
    return {"tokens_per_s": r.tokens_per_s, "devices": float(r.devices)}


if __name__ == "__main__":
    main()
