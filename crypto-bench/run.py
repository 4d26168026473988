#!/usr/bin/env python3
"""Build crypto-bench natively and for wasm32-wasip1, run both (the .wasm under Wasmtime, from
the `wasmtime` PyPI package), and print a Markdown table of µs per verification.

    python3 crypto-bench/run.py [--quick] [--no-build] [--filter SUBSTRING] [--json OUT.json]

Needs: cargo with the wasm32-wasip1 target, and `pip install wasmtime` in the Python running this
script (the Makefile's bench target installs it into a venv). Each case is timed in 5 batches
after calibration; the table shows the median and (in parentheses) the fastest batch, which is
the figure least disturbed by other load on the machine. Times are thread CPU time.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join(HERE, "target", "release", "crypto-bench")
WASM = os.path.join(HERE, "target", "wasm32-wasip1", "release", "crypto-bench.wasm")


def build():
    for extra in ([], ["--target", "wasm32-wasip1"]):
        subprocess.run(["cargo", "build", "--release", "--quiet", *extra], cwd=HERE, check=True)


def parse(lines, results):
    failed = False
    for line in lines.splitlines():
        parts = line.split("\t")
        if parts[0] == "RESULT":
            _, target, case, median, best, _n = parts
            results.setdefault(case, {})[target] = (float(median), float(best))
        elif parts[0] == "FAIL":
            print(line, file=sys.stderr)
            failed = True
    return failed


def run_native(args):
    out = subprocess.run([NATIVE, *args], capture_output=True, text=True, check=False)
    sys.stderr.write(out.stderr)
    return out.stdout, out.returncode


def run_wasm(args):
    import wasmtime  # noqa: PLC0415 (optional dependency, only needed here)

    engine = wasmtime.Engine()
    t0 = time.perf_counter()
    module = wasmtime.Module.from_file(engine, WASM)
    compile_s = time.perf_counter() - t0
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    # Thread CPU time for the benchmark's clock (WASI preview 1 has no CPU-time clock here).
    linker.define_func("bench", "thread_cpu_ns", wasmtime.FuncType([], [wasmtime.ValType.i64()]),
                       time.thread_time_ns)
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["crypto-bench", *args]
    out_path = os.path.join(HERE, "target", "wasm-stdout.txt")
    wasi.stdout_file = out_path
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    code = 0
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    with open(out_path) as f:
        return f.read(), code, compile_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--filter")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not a.no_build:
        build()
    args = (["--quick"] if a.quick else []) + (["--filter", a.filter] if a.filter else [])
    results = {}
    out, code = run_native(args)
    failed = parse(out, results) or code != 0
    wout, wcode, compile_s = run_wasm(args)
    failed = parse(wout, results) or wcode != 0 or failed

    def cell(case, target):
        v = results.get(case, {}).get(target)
        return f"{v[0]:.1f} ({v[1]:.1f})" if v else "—"

    print(f"crypto-bench: µs per call, median (fastest batch); wasm: Wasmtime "
          f"{_wasmtime_version()}, module {os.path.getsize(WASM) / 1024:.0f} KiB, "
          f"compiled in {compile_s * 1e3:.0f} ms\n")
    print("| case | native | wasm32 (Wasmtime) | wasm / native |")
    print("| --- | ---: | ---: | ---: |")
    for case in results:
        n = results[case].get("native")
        w = results[case].get("wasm32")
        ratio = f"{w[1] / n[1]:.1f}x" if n and w and n[1] > 0 else "—"
        print(f"| {case} | {cell(case, 'native')} | {cell(case, 'wasm32')} | {ratio} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "wasm_bytes": os.path.getsize(WASM),
                       "wasm_compile_ms": compile_s * 1e3}, f, indent=1)
    if failed:
        print("crypto-bench: a verification returned the wrong answer", file=sys.stderr)
        sys.exit(1)


def _wasmtime_version():
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return version("wasmtime")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    main()
