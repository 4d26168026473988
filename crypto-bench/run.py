#!/usr/bin/env python3
"""Build crypto-bench natively and for wasm32-wasip1, run it natively, under Wasmtime (the
`wasmtime` PyPI package; Kong's runtime) and, when `node` is installed, under V8 (Envoy's
runtime, through crypto-bench/run_v8.mjs), and print a Markdown table of µs per verification.

    python3 crypto-bench/run.py [--quick] [--no-build] [--no-v8] [--filter SUBSTRING]
                                [--json OUT.json]

Needs: cargo with the wasm32-wasip1 target, and `pip install wasmtime` in the Python running this
script (the Makefile's bench target installs it into a venv). Each case is warmed up, then timed
in 5 batches after calibration; the table shows the median and (in parentheses) the fastest
batch, which is the figure least disturbed by other load on the machine. Times are thread CPU
time (process CPU time under node). The JSON holds {"results": {case: {"native"|"wasm32"|"v8":
[median, fastest]}}, "wasm_bytes", "wasm_compile_ms", "sizes"}.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# A workspace member: its binaries are in the workspace's target directory.
TARGET = os.path.join(os.path.dirname(HERE), "target")
NATIVE = os.path.join(TARGET, "release", "crypto-bench")
WASM = os.path.join(TARGET, "wasm32-wasip1", "release", "crypto-bench.wasm")


def build():
    for extra in ([], ["--target", "wasm32-wasip1"]):
        subprocess.run(["cargo", "build", "--release", "--quiet", *extra], cwd=HERE, check=True)


def parse(lines, results):
    failed = False
    for line in lines.splitlines():
        parts = line.split("\t")
        if parts[0] == "RESULT" and len(parts) == 6:
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


def run_v8(args):
    """The same .wasm under node's V8; None when node is missing."""
    node = shutil.which("node")
    if not node:
        return None, 0
    out = subprocess.run([node, "--no-warnings", os.path.join(HERE, "run_v8.mjs"), WASM, *args],
                         capture_output=True, text=True, check=False)
    return out.stdout.replace("RESULT\twasm32\t", "RESULT\tv8\t"), out.returncode


def module_sizes():
    """Stripped sizes of the size probes: the same five verifications through identity-crypto
    (size_new) and through jwt-simple (size_old), and the empty program shell (size_base)."""
    sizes = {}
    for name in ("size_base", "size_new", "size_old"):
        path = os.path.join(TARGET, "wasm32-wasip1", "release", name + ".wasm")
        if os.path.exists(path):
            sizes[name] = _stripped_size(path)
    return sizes


def _stripped_size(path):
    """Size without custom sections (names, producers): what `strip = true` leaves."""
    with open(path, "rb") as f:
        data = f.read()
    pos, size = 8, 8
    while pos < len(data):
        sec_id = data[pos]
        pos += 1
        length, shift = 0, 0
        while True:
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        header = 1 + (shift // 7)
        if sec_id != 0:
            size += header + length
        pos += length
    return size


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
    # A private file: several runs (make bench, a developer) may share this checkout.
    fd, out_path = tempfile.mkstemp(prefix="crypto-bench-wasm-", suffix=".txt")
    os.close(fd)
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
        text = f.read()
    os.unlink(out_path)
    return text, code, compile_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--filter")
    ap.add_argument("--json")
    ap.add_argument("--no-v8", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        build()
    args = (["--quick"] if a.quick else []) + (["--filter", a.filter] if a.filter else [])
    results = {}
    out, code = run_native(args)
    failed = parse(out, results) or code != 0
    wout, wcode, compile_s = run_wasm(args)
    failed = parse(wout, results) or wcode != 0 or failed
    have_v8 = False
    if not a.no_v8:
        vout, vcode = run_v8(args)
        if vout is not None:
            have_v8 = True
            failed = parse(vout, results) or vcode != 0 or failed
    sizes = module_sizes()

    def cell(case, target):
        v = results.get(case, {}).get(target)
        return f"{v[0]:.1f} ({v[1]:.1f})" if v else "—"

    print(f"crypto-bench: µs per call, median (fastest batch); wasm: Wasmtime "
          f"{_wasmtime_version()}, module {os.path.getsize(WASM) / 1024:.0f} KiB, "
          f"compiled in {compile_s * 1e3:.0f} ms\n")
    v8_head = " | wasm32 (V8, node) |" if have_v8 else " |"
    print("| case | native | wasm32 (Wasmtime)" + v8_head + " Wasmtime / native |")
    print("| --- | ---: | ---:" + (" | ---:" if have_v8 else "") + " | ---: |")
    for case in results:
        n = results[case].get("native")
        w = results[case].get("wasm32")
        ratio = f"{w[1] / n[1]:.1f}x" if n and w and n[1] > 0 else "—"
        v8 = f" {cell(case, 'v8')} |" if have_v8 else ""
        print(f"| {case} | {cell(case, 'native')} | {cell(case, 'wasm32')} |{v8} {ratio} |")
    if sizes:
        base = sizes.get("size_base", 0)
        parts = [f"{k}: {v / 1024:.0f} KiB" for k, v in sizes.items()]
        print(f"\nwasm32 size probes (stripped): {', '.join(parts)}; the five verifications add "
              f"{(sizes.get('size_new', 0) - base) / 1024:.0f} KiB through identity-crypto and "
              f"{(sizes.get('size_old', 0) - base) / 1024:.0f} KiB through jwt-simple.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "wasm_bytes": os.path.getsize(WASM),
                       "wasm_compile_ms": compile_s * 1e3, "sizes": sizes}, f, indent=1)
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
