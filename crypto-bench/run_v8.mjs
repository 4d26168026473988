// Run crypto-bench.wasm under Node's V8 (the engine Envoy embeds) with WASI preview 1.
// Usage: node crypto-bench/run_v8.mjs path/to/crypto-bench.wasm [crypto-bench args...]
// The benchmark's clock import `bench.thread_cpu_ns` is the process CPU time (user + system).
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: "preview1", args: ["crypto-bench", ...args], env: {}, returnOnExit: true });
const t0 = process.hrtime.bigint();
const module = await WebAssembly.compile(await readFile(wasmPath));
const compileMs = Number(process.hrtime.bigint() - t0) / 1e6;
const cpuNs = () => {
  const u = process.cpuUsage();
  return BigInt(u.user + u.system) * 1000n;
};
const instance = await WebAssembly.instantiate(module, {
  wasi_snapshot_preview1: wasi.wasiImport,
  bench: { thread_cpu_ns: cpuNs },
});
const code = wasi.start(instance);
process.stderr.write(`v8 ${process.versions.v8} compile ${compileMs.toFixed(0)} ms\n`);
process.exit(code);
