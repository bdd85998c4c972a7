"""FlightLLM: Llama-2-7B decode on an Alveo U280 with FlightLLM's mixed precision (4-bit
weights, int8 activations and KV cache) against an fp16 V100S.

Run: python examples/api/flightllm.py (times in s, energy in J)."""

import decodex as dx

FLIGHTLLM_PRECISION = "w=int4,a=int8,kv=int8,wbits=4.1"  # ~4.1 bits per weight with its sparse/mixed encoding


def main() -> dict[str, float]:
    """Batch-1 decode at 512 cached tokens on the U280 (FlightLLM mapper) and on a V100S (fp16)."""
    fpga = dx.estimate("llama2-7b", "alveo-u280", 1, context=512, precision=FLIGHTLLM_PRECISION)
    gpu = dx.estimate("llama2-7b", "v100s", 1, context=512, precision="fp16")
    for name, r in (("Alveo U280", fpga), ("V100S", gpu)):
        print(f"{name:10s} step {r.step_time_s * 1e3:6.2f} ms  {r.tokens_per_s:6.1f} tokens/s  "
              f"{r.energy_per_token_j:6.3f} J/token")
    print(f"energy per token, V100S / U280: {gpu.energy_per_token_j / fpga.energy_per_token_j:.1f}x")
    return {"fpga": fpga.tokens_per_s, "gpu": gpu.tokens_per_s}


if __name__ == "__main__":
    main()
