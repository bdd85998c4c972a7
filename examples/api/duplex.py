"""Duplex: Mixtral-8x7B decode on an xPU with Logic-PIM for the low-Op/B work (experts and
attention) against the same xPU alone.

Run: python examples/api/duplex.py (times in s, energy in J)."""

import decodex as dx


def main() -> dict[str, float]:
    """Throughput and energy per token of mixtral-8x7b (fp16, tp 4, batch 32, 1024 cached tokens)
    on 4 Duplex devices and on 4 H100s."""
    out = {}
    for system in ("4x-h100-sxm", "4x-duplex"):
        r = dx.simulate("mixtral-8x7b", system, 32, context=1024, precision="fp16", parallelism=dx.Parallelism(tp=4))
        out[system] = r.tokens_per_s
        print(f"{system:12s} step {r.step_time_s * 1e3:6.2f} ms  {r.tokens_per_s:8,.0f} tokens/s  "
              f"{r.energy_per_token_j * 1e3:6.1f} mJ/token")
    print(f"Duplex / H100: {out['4x-duplex'] / out['4x-h100-sxm']:.2f}x")
    return out


if __name__ == "__main__":
    main()
