"""Engine speed: EngineClient (a) against bare llama-cpp-python at its defaults (b) and
llama.cpp's own decode rate from its performance counters inside the engine (c).

Same model (SmolLM2 135M Q4_1 from the default pack), same prompts, same sampling, same
threads; (a) and (b) alternate run by run so that the machine's noise falls on both.
Also measures how long a cancel takes to end a reply, during generation and during a
long prompt. Prints a table, then one JSON line.

    python benchmarks/engine_speed.py [--runs 6] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import privacy  # noqa: E402

privacy.install()

from engine import model_pack  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings, physical_cores  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import report  # noqa: E402

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "max_tokens": 128}
TOPICS = ["a lighthouse keeper", "a clockmaker in Prague", "a girl who maps rivers", "an old fishing boat",
          "a baker who never sleeps", "a library on the moon", "a train that runs backwards", "two rival gardeners",
          "a robot learning to paint", "a village under the snow", "a lost violin", "a cartographer's apprentice"]


def prompt_for(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}. "
                                        "Describe the place, the people and what happens over a whole year."}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_engine(client: EngineClient, model: str, messages: list[dict], sampling: dict) -> dict:
    started = time.perf_counter()
    first = last = None
    pieces = 0
    done = None
    for event in client.chat(model, messages, sampling).events(timeout=600):
        now = time.perf_counter()
        if event["event"] == "token":
            pieces += 1
            if first is None:
                first = now
            last = now
        elif event["event"] == "done":
            done = event
        elif event["event"] == "error":
            raise RuntimeError(event["message"])
    metrics = done["metrics"]
    n = metrics["completion_tokens"]
    return {
        "ttft_ms": (first - started) * 1000.0,
        # As the user sees it: tokens arriving in the client, first to last.
        "tokens_per_s": (n - 1) / (last - first) if n > 1 and last > first else float("nan"),
        "llama_tokens_per_s": metrics["llama_tokens_per_s"],
        "tokens": n,
        # Prompt processing as the engine timed it: the tokens it evaluated (after the cached
        # prefix) and where they sat in the context, for the GFLOP/s against the machine's peak.
        "prompt_tokens_per_s": metrics.get("prompt_tokens_per_s"),
        "prompt_tokens_evaluated": metrics.get("prompt_tokens_evaluated") or 0,
        "prompt_tokens": metrics.get("prompt_tokens") or 0,
    }


def run_bare(llm, messages: list[dict], sampling: dict, seed: int) -> dict:
    started = time.perf_counter()
    first = last = None
    n = 0
    stream = llm.create_chat_completion(
        messages=messages, stream=True, max_tokens=sampling["max_tokens"], temperature=sampling["temperature"],
        top_p=sampling["top_p"], top_k=sampling["top_k"], min_p=sampling["min_p"],
        repeat_penalty=sampling["repeat_penalty"], seed=seed,
    )
    for chunk in stream:
        delta = chunk["choices"][0].get("delta", {})
        if delta.get("content"):
            now = time.perf_counter()
            n += 1  # llama-cpp-python streams one chunk per generated token
            if first is None:
                first = now
            last = now
    return {
        "ttft_ms": (first - started) * 1000.0,
        "tokens_per_s": (n - 1) / (last - first) if n > 1 and last > first else float("nan"),
        "tokens": n,
    }


def cancel_latency(client: EngineClient, model: str, rounds: int) -> tuple[list[float], list[float]]:
    during_generation, during_prompt = [], []
    long_text = " ".join(f"Paragraph {i} describes harbours, tides and the boats that wait for them." for i in range(150))
    for i in range(rounds):
        handle = client.chat(model, prompt_for(i), {**SAMPLING, "max_tokens": 2000})
        asked = None
        for event in handle.events(timeout=600):
            if event["event"] == "token" and asked is None:
                time.sleep(0.2)
                asked = time.perf_counter()
                handle.cancel()
            elif event["event"] in ("done", "error"):
                during_generation.append((time.perf_counter() - asked) * 1000.0)
        handle = client.chat(model, [{"role": "user", "content": f"{i} {long_text}"}], {**SAMPLING, "max_tokens": 4})
        time.sleep(0.4)
        asked = time.perf_counter()
        handle.cancel()
        events = list(handle.events(timeout=600))
        ended = (time.perf_counter() - asked) * 1000.0
        metrics = events[-1].get("metrics") or {}
        if events[-1].get("kind") == "cancelled" and metrics.get("prompt_tokens_done", 0) < metrics.get("prompt_tokens", 0):
            during_prompt.append(ended)
        else:
            print(f"note: prompt-cancel round {i} did not land inside the prompt: {events[-1]}", file=sys.stderr)
    return during_generation, during_prompt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--cancel-rounds", type=int, default=5)
    args = parser.parse_args()
    sampling = {**SAMPLING, "max_tokens": args.max_tokens}
    model = str(model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent")))
    threads = physical_cores()

    import llama_cpp

    # Threads fixed, as the bare run's are: the worker would see the bare run that just ended as
    # another program keeping the cores busy and start its request on fewer threads.
    settings = EngineSettings(n_threads=threads, n_threads_batch=threads, adapt_threads=False)
    client = EngineClient(settings)
    client.start()
    # Defaults, except the thread count, which the comparison holds equal.
    bare = llama_cpp.Llama(model_path=model, n_threads=threads, verbose=False)
    try:
        run_engine(client, model, prompt_for(99), sampling)  # warm-up: load, page in
        run_bare(bare, prompt_for(98), sampling, seed=1)
        a_runs, b_runs = [], []
        for i in range(args.runs):
            a_runs.append(run_engine(client, model, prompt_for(i), {**sampling, "seed": i}))
            b_runs.append(run_bare(bare, prompt_for(i), sampling, seed=i))
        gen_cancel, prompt_cancel = cancel_latency(client, model, args.cancel_rounds)
    finally:
        client.close()
        del bare
    # The machine's limits in the same run, with the engine and llama-cpp-python gone.
    shape = machine_limits.model_shape(model)
    limits = machine_limits.measure_machine(machine_limits.model_gemm_shapes(shape, settings.n_batch))

    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    a_tps, b_tps, c_tps = med(a_runs, "tokens_per_s"), med(b_runs, "tokens_per_s"), med(a_runs, "llama_tokens_per_s")
    a_ttft, b_ttft = med(a_runs, "ttft_ms"), med(b_runs, "ttft_ms")

    def decode_share(tokens_per_s: float) -> float:
        return machine_limits.decode_bandwidth_fraction(tokens_per_s, shape["decode_weight_bytes"],
                                                        limits.bandwidth_gb_per_s)

    prompted = [r for r in a_runs if r["prompt_tokens_per_s"]]
    prompt_tps = statistics.median(r["prompt_tokens_per_s"] for r in prompted) if prompted else None
    # Each evaluated token attends over the cached tokens before it and half of the evaluated ones.
    prompt_gflops = statistics.median(
        r["prompt_tokens_per_s"] * machine_limits.gflop_per_text(
            shape, 1, r["prompt_tokens"] - r["prompt_tokens_evaluated"] / 2, head=False)
        for r in prompted) if prompted else None
    figures = {
        "engine_tokens_per_s": round(a_tps, 1),
        "bare_llama_cpp_python_tokens_per_s": round(b_tps, 1),
        "llama_perf_decode_tokens_per_s": round(c_tps, 1),
        "tokens_per_s_ratio_vs_bare": round(a_tps / b_tps, 3),
        "tokens_per_s_ratio_vs_llama_perf": round(a_tps / c_tps, 3),
        "engine_ttft_ms_p50": round(a_ttft, 1),
        "bare_ttft_ms_p50": round(b_ttft, 1),
        "ttft_ratio_vs_bare": round(a_ttft / b_ttft, 3),
        "cancel_during_generation_ms_p95": round(pct(gen_cancel, 0.95), 1),
        "cancel_during_prompt_ms_p95": round(pct(prompt_cancel, 0.95), 1),
        # Decode: bytes of weights read per second against the memory bandwidth; prompt
        # processing: GFLOP/s against the matrix-multiply peak (benchmarks/machine_limits.py).
        "decode_weight_mb": round(shape["decode_weight_bytes"] / 1e6, 1),
        "engine_decode_fraction_of_bandwidth": round(decode_share(a_tps), 3),
        "bare_decode_fraction_of_bandwidth": round(decode_share(b_tps), 3),
        "llama_perf_decode_fraction_of_bandwidth": round(decode_share(c_tps), 3),
        "engine_prompt_tokens_per_s_p50": round(prompt_tps, 1) if prompt_tps else None,
        "engine_prompt_tokens_evaluated_p50": round(med(a_runs, "prompt_tokens_evaluated")),
        "engine_prompt_gflops_p50": round(prompt_gflops, 1) if prompt_gflops else None,
        "engine_prompt_fraction_of_gemm_peak": round(prompt_gflops / limits.gemm_gflops, 3) if prompt_gflops else None,
        "machine_bandwidth_gb_per_s": round(limits.bandwidth_gb_per_s, 2),
        "machine_gemm_peak_gflops": round(limits.gemm_gflops, 1),
        "threads": threads,
        "runs": args.runs,
        "tokens_per_run": round(med(a_runs, "tokens")),
    }
    targets = {"tokens_per_s_ratio_vs_bare": 1.2, "tokens_per_s_ratio_vs_llama_perf": 0.95, "ttft_ratio_vs_bare": 1.1,
               "cancel_during_generation_ms_p95": 250, "cancel_during_prompt_ms_p95": 250}
    met = (figures["tokens_per_s_ratio_vs_bare"] >= targets["tokens_per_s_ratio_vs_bare"]
           and figures["tokens_per_s_ratio_vs_llama_perf"] >= targets["tokens_per_s_ratio_vs_llama_perf"]
           and figures["ttft_ratio_vs_bare"] <= targets["ttft_ratio_vs_bare"]
           and figures["cancel_during_generation_ms_p95"] <= 250 and figures["cancel_during_prompt_ms_p95"] <= 250)

    print(f"{'':36}{'tokens/s':>10}{'TTFT ms':>10}{'of bandwidth':>14}")
    print(f"{'(a) EngineClient':36}{a_tps:>10.1f}{a_ttft:>10.1f}{decode_share(a_tps):>14.1%}")
    print(f"{'(b) llama-cpp-python defaults':36}{b_tps:>10.1f}{b_ttft:>10.1f}{decode_share(b_tps):>14.1%}")
    print(f"{'(c) llama.cpp perf counters (engine)':36}{c_tps:>10.1f}{'':>10}{decode_share(c_tps):>14.1%}")
    print(f"a/b tokens/s {a_tps / b_tps:.2f}x (target >= 1.2), a/c {a_tps / c_tps:.3f} (>= 0.95), "
          f"TTFT a/b {a_ttft / b_ttft:.2f} (<= 1.1); decode (a) streams {decode_share(a_tps):.1%} of the "
          f"memory bandwidth ({figures['decode_weight_mb']} MB of weights a token)")
    if prompt_gflops:
        print(f"prompt processing (a): {prompt_tps:.0f} tokens/s, {prompt_gflops:.1f} GFLOP/s = "
              f"{prompt_gflops / limits.gemm_gflops:.1%} of the GEMM peak "
              f"({figures['engine_prompt_tokens_evaluated_p50']} tokens evaluated a prompt)")
    print(limits.describe())
    print(f"cancel p95: during generation {figures['cancel_during_generation_ms_p95']} ms, "
          f"during prompt {figures['cancel_during_prompt_ms_p95']} ms (target <= 250)")
    report("engine_speed", figures, targets, met, machine=limits.record())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
