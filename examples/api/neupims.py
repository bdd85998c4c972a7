"""NeuPIMs: how much does sub-batch interleaving (attention in the PIM while the NPU runs the
other sub-batch's GEMMs) save on GPT-3 7B at batch 256?

Run: python examples/api/neupims.py (simulated step times in s)."""

import decodex as dx


def main() -> dict[str, float]:
    """Step time of gpt3-7b (fp16, tp 4, batch 256, 512 cached tokens) on NeuPIMs with one and two
    sub-batches, and on the NPU alone."""
    common = {"context": 512, "precision": "fp16", "parallelism": dx.Parallelism(tp=4)}
    one = dx.simulate("gpt3-7b", "neupims", 256, sub_batches=1, **common)
    two = dx.simulate("gpt3-7b", "neupims", 256, sub_batches=2, **common)
    npu = dx.simulate("gpt3-7b", "npu-only", 256, **common)
    for name, r in (("NPU only", npu), ("NeuPIMs, 1 sub-batch", one), ("NeuPIMs, 2 sub-batches", two)):
        print(f"{name:24s} step {r.step_time_s * 1e3:7.2f} ms  {r.tokens_per_s:8,.0f} tokens/s")
    print(f"interleaving: {one.step_time_s / two.step_time_s:.2f}x; NeuPIMs over NPU: "
          f"{npu.step_time_s / two.step_time_s:.2f}x")
    return {"npu": npu.step_time_s, "one": one.step_time_s, "two": two.step_time_s}


if __name__ == "__main__":
    main()
