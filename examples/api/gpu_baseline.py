"""GPU baseline: what does an H200's extra HBM bandwidth buy Llama-3-70B decode over an H100?

Run: python examples/api/gpu_baseline.py (prints step time and throughput; times in s)."""

import decodex as dx


def main() -> dict[str, float]:
    """Tokens/s of Llama-3-70B (tp 8, batch 64, 2048 cached tokens) on H100 and H200."""
    out = {}
    for system in ("h100-sxm", "h200"):
        r = dx.estimate("llama3-70b", system, 64, context=2048, parallelism=dx.Parallelism(tp=8))
        out[system] = r.tokens_per_s
        print(f"{system:9s} step {r.step_time_s * 1e3:6.2f} ms  {r.tokens_per_s:8,.0f} tokens/s  "
              f"measured step likely in {r.band_low_s * 1e3:.1f}..{r.band_high_s * 1e3:.1f} ms")
    print(f"H200 / H100: {out['h200'] / out['h100-sxm']:.2f}x (HBM bandwidth ratio 4.8 / 3.35 = 1.43x)")
    return out


if __name__ == "__main__":
    main()
