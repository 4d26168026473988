// The emulated proxy-wasm 0.2.1 host of run.py, in JavaScript, under node's V8 (the engine Envoy
// embeds). Same scenario, same driver (driver.wat, compiled by run.py), same procedure; prints
// the batches as JSON for run.py to check and tabulate (the same JSON as the Rust host, main.rs).
// Usage: node host_v8.mjs SCENARIO.json BATCHES BATCH_MS
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";
import process from "node:process";
import { performance } from "node:perf_hooks";

const [scenarioPath, batchesArg, batchMsArg] = process.argv.slice(2);
const sc = JSON.parse(readFileSync(scenarioPath, "utf8"));
const BATCHES = Number(batchesArg), BATCH_MS = Number(batchMsArg);
const OK = 0, NOT_FOUND = 1, UNIMPLEMENTED = 12, PLUGIN_CONFIGURATION = 7, REQUEST_HEADERS = 0;
const enc = new TextEncoder(), dec = new TextDecoder();
// Process CPU time (node has no per-thread clock); V8's background threads idle after warmup.
const cpuNs = () => { const u = process.cpuUsage(); return (u.user + u.system) * 1000; };

// Size of a proxy-wasm map: u32 count, per pair u32 key_len u32 value_len, then key\0 value\0.
function mapSize(pairs) {
  let size = 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) size += pairs[i][0].length + pairs[i][1].length + 2;
  return size;
}

// Serialize `pairs` into `out` (a Uint8Array) at `at`; `dv` views the same buffer.
function serializeMap(pairs, out, dv, at) {
  dv.setUint32(at, pairs.length, true);
  let pos = at + 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) {
    const [k, v] = pairs[i];
    dv.setUint32(at + 4 + 8 * i, k.length, true);
    dv.setUint32(at + 8 + 8 * i, v.length, true);
    out.set(k, pos); pos += k.length; out[pos++] = 0;
    out.set(v, pos); pos += v.length; out[pos++] = 0;
  }
}

function parseMap(data) {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = dv.getUint32(0, true);
  let pos = 4 + 8 * n;
  const out = [];
  for (let i = 0; i < n; i++) {
    const kl = dv.getUint32(4 + 8 * i, true), vl = dv.getUint32(8 + 8 * i, true);
    const k = data.slice(pos, pos + kl); pos += kl + 1;
    out.push([k, data.slice(pos, pos + vl)]); pos += vl + 1;
  }
  return out;
}

function eq(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function lower(b) { // ASCII, in place (b is a copy)
  for (let i = 0; i < b.length; i++) if (b[i] >= 65 && b[i] <= 90) b[i] += 32;
  return b;
}

class Host {
  constructor(config, headers, rotate) {
    this.config = enc.encode(config);
    this.template = headers.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
    // A header whose value changes every request (a DPoP proof is sent once); `reused` counts
    // requests that found the values used up (sent again).
    this.rotate = rotate?.header ? [enc.encode(rotate.header), rotate.values.map((x) => enc.encode(x))] : null;
    this.rotateNext = 0;
    this.reused = 0;
    this.headers = [];
    this.local = null;
    this.logs = [];
    this.metrics = new Map();
    this.stats = {};
  }
  // Views of the guest memory, renewed only when it grew (a new ArrayBuffer).
  bytes() { if (this.u8?.buffer !== this.memory.buffer) this.u8 = new Uint8Array(this.memory.buffer); return this.u8; }
  view() { if (this.dv?.buffer !== this.memory.buffer) this.dv = new DataView(this.memory.buffer); return this.dv; }
  read(ptr, size) { return size ? this.bytes().slice(ptr, ptr + size) : new Uint8Array(0); }
  give(data, ptrPtr, sizePtr) {
    const ptr = data.length ? this.alloc(data.length) : 0;
    if (data.length) this.bytes().set(data, ptr);
    const dv = this.view();
    dv.setUint32(ptrPtr, ptr, true);
    dv.setUint32(sizePtr, data.length, true);
    return OK;
  }
  // harness
  begin(_id) {
    this.headers = this.template.slice();
    if (this.rotate && this.rotate[1].length) {
      const [name, values] = this.rotate;
      if (this.rotateNext >= values.length) this.reused++;
      this.headers.push([name, values[this.rotateNext++ % values.length]]);
    }
    this.local = null;
    this.logs.length = 0;
    return this.headers.length;
  }
  empty(_a, _b, _c) { return 0; }
  // proxy-wasm
  proxy_log(_level, ptr, size) { this.logs.push(this.read(ptr, size)); return OK; }
  proxy_get_current_time_nanoseconds(ret) {
    const ns = Date.now() * 1e6, hi = Math.floor(ns / 4294967296), dv = this.view();
    dv.setUint32(ret, ns - hi * 4294967296, true);
    dv.setUint32(ret + 4, hi, true);
    return OK;
  }
  proxy_get_buffer_bytes(kind, start, size, retPtr, retSize) {
    if (kind !== PLUGIN_CONFIGURATION) return NOT_FOUND;
    // i32 arrives signed; the SDK asks for usize::MAX bytes
    return this.give(this.config.subarray(start, start + (size >>> 0)), retPtr, retSize);
  }
  proxy_get_header_map_pairs(kind, retPtr, retSize) {
    const pairs = kind === REQUEST_HEADERS ? this.headers : [];
    const size = mapSize(pairs), ptr = this.alloc(size);
    serializeMap(pairs, this.bytes(), this.view(), ptr);
    const dv = this.view();
    dv.setUint32(retPtr, ptr, true);
    dv.setUint32(retSize, size, true);
    return OK;
  }
  proxy_get_header_map_value(kind, kp, ks, retPtr, retSize) {
    const key = lower(this.read(kp, ks));
    for (const [k, v] of kind === REQUEST_HEADERS ? this.headers : []) {
      if (eq(k, key)) return this.give(v, retPtr, retSize);
    }
    return NOT_FOUND;
  }
  proxy_remove_header_map_value(kind, kp, ks) {
    if (kind === REQUEST_HEADERS) {
      const key = lower(this.read(kp, ks));
      this.headers = this.headers.filter(([k]) => !eq(k, key));
    }
    return OK;
  }
  proxy_replace_header_map_value(kind, kp, ks, vp, vs) {
    if (kind === REQUEST_HEADERS) {
      const key = lower(this.read(kp, ks));
      this.headers = this.headers.filter(([k]) => !eq(k, key));
      this.headers.push([key, this.read(vp, vs)]);
    }
    return OK;
  }
  proxy_add_header_map_value(kind, kp, ks, vp, vs) {
    if (kind === REQUEST_HEADERS) this.headers.push([lower(this.read(kp, ks)), this.read(vp, vs)]);
    return OK;
  }
  proxy_send_local_response(status, _dp, _ds, bp, bs, hp, hs, _grpc) {
    this.read(bp, bs);
    parseMap(this.read(hp, hs));
    this.local = status;
    return OK;
  }
  proxy_continue_stream(_kind) { return OK; }
  proxy_set_tick_period_milliseconds(_period) { return OK; }
  proxy_define_metric(_kind, ptr, size, ret) {
    dec.decode(this.read(ptr, size));
    const id = this.metrics.size + 1;
    this.metrics.set(id, 0n);
    this.view().setUint32(ret, id, true);
    return OK;
  }
  proxy_increment_metric(id, offset) {
    if (!this.metrics.has(id)) return NOT_FOUND;
    this.metrics.set(id, this.metrics.get(id) + BigInt(offset));
    return OK;
  }
  proxy_record_metric(id, value) {
    if (!this.metrics.has(id)) return NOT_FOUND;
    this.metrics.set(id, BigInt(value));
    return OK;
  }
  proxy_get_property() { return NOT_FOUND; }
  proxy_set_effective_context(_id) { return OK; }
  // counting and timing
  timed(name, fn) {
    const stat = (this.stats[name] ??= [0, 0]);
    return (...args) => {
      const t0 = performance.now();
      const r = fn(...args);
      stat[1] += (performance.now() - t0) * 1e6;
      stat[0] += 1;
      return r;
    };
  }
}

const modules = new Map();
const driver = new WebAssembly.Module(Buffer.from(sc.driver, "base64"));

function instantiate(v) {
  let module = modules.get(v.module);
  if (!module) modules.set(v.module, (module = new WebAssembly.Module(readFileSync(v.module))));
  const host = new Host(v.config, v.headers, v.rotate);
  const env = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === "wasi_snapshot_preview1") continue;
    if (imp.module !== "env" || imp.kind !== "function") throw new Error(`unexpected import ${imp.module}.${imp.name}`);
    const fn = typeof host[imp.name] === "function" ? host[imp.name].bind(host) : null;
    const name = fn ? imp.name : `${imp.name} (stub)`;
    env[imp.name] = host.timed(name, fn ?? (() => UNIMPLEMENTED));
  }
  const wasi = new WASI({ version: "preview1", args: [], env: {}, returnOnExit: true });
  const wasiImport = {}; // node's own WASI, counted and timed like the proxy-wasm functions
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === "wasi_snapshot_preview1") wasiImport[imp.name] = host.timed(imp.name, wasi.wasiImport[imp.name]);
  }
  const instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasiImport });
  const ex = instance.exports;
  host.memory = ex.memory;
  host.alloc = ex.proxy_on_memory_allocate;
  wasi.initialize(instance); // _initialize
  ex.proxy_on_context_create(1, 0);
  if (!ex.proxy_on_vm_start(1, 0)) throw new Error("proxy_on_vm_start returned false");
  if (!ex.proxy_on_configure(1, host.config.length)) throw new Error("proxy_on_configure returned false");
  const d = new WebAssembly.Instance(driver, {
    filter: ex,
    bench: { begin: host.timed("(harness) begin", host.begin.bind(host)), empty: host.timed("(harness) empty", host.empty) },
  }).exports;
  let next = 2;
  const requests = (n) => { const first = next; next += n; return d.run(first, n); };
  return { host, requests, calls: (n) => d.calls(n) };
}

// ns (wall clock) one guest→host call costs beyond the time measured inside it: the least
// disturbed of 7 runs.
function calibrate(run) {
  const stat = () => run.host.stats["(harness) empty"];
  run.calls(20000);
  let best = Infinity;
  for (let i = 0; i < 7; i++) {
    stat()[0] = stat()[1] = 0;
    const n = 500000, t0 = performance.now();
    run.calls(n);
    best = Math.min(best, ((performance.now() - t0) * 1e6 - stat()[1]) / n);
  }
  return best;
}

function batches(v, run) {
  const action = run.requests(1), h = run.host;
  const first = { action, status: h.local, headers: h.headers.map(([k, val]) => [dec.decode(k), dec.decode(val)]),
                  logs: h.logs.map((l) => dec.decode(l)) };
  let n = 50, took;
  for (;;) {
    const t0 = performance.now();
    run.requests(n);
    took = (performance.now() - t0) / 1000;
    if (took > 0.05 * v.weight || n >= 200000) break;
    n *= 2;
  }
  const perReq = took / n;
  run.requests(Math.max(1, Math.floor(0.5 * v.weight / perReq)));
  const size = Math.max(20, Math.floor(BATCH_MS / 1000 * v.weight / perReq));
  const result = [];
  for (let b = 0; b < BATCHES; b++) {
    for (const s of Object.values(run.host.stats)) s[0] = s[1] = 0;
    const w0 = performance.now(), c0 = cpuNs();
    const acts = run.requests(size);
    const c1 = cpuNs(), w1 = performance.now();
    const host = {};
    for (const [k, s] of Object.entries(run.host.stats)) if (s[0]) host[k] = [s[0], s[1]];
    result.push({ n: size, cpu_ns: c1 - c0, wall_ns: (w1 - w0) * 1e6, actions: acts, host });
  }
  return { first, batches: result, reused: run.host.reused };
}

const out = { engine: `V8 ${process.versions.v8} (node ${process.versions.node})`, variants: {} };
for (const v of sc.variants) {
  const run = instantiate(v);
  if (out.call_ns === undefined) out.call_ns = calibrate(run);
  out.variants[v.name] = batches(v, run);
}
process.stdout.write(JSON.stringify(out));
