"""The built module stays small enough to start fast: Envoy's V8 compiles it for every VM
(every worker, every filter chain that loads it) and Kong's Wasmtime for every worker, so its
size is a budget of the project (docs/benchmarks.md, "Module size and VM start"): at most 1 MiB. The size is
exact, not timed; `make bench` reports what the start costs."""

from __future__ import annotations

from pathlib import Path

MODULE_BUDGET_BYTES = 1 << 20


def test_the_module_fits_its_size_budget(wasm: Path) -> None:
    size = wasm.stat().st_size
    assert size <= MODULE_BUDGET_BYTES, (
        f"{wasm.name} is {size:,} bytes, over the {MODULE_BUDGET_BYTES:,}-byte budget by "
        f"{size - MODULE_BUDGET_BYTES:,}: `make size` shows which crates and functions grew")
