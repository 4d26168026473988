//! An emulated proxy-wasm 0.2.1 host under Wasmtime 26 (Kong's runtime): loads a filter module,
//! configures it and drives requests through its real callbacks, counting and timing every host
//! call. The request loop runs in wasm (driver.wat), so a batch is one call into the guest.
//!
//!     wasm-host SCENARIO.json DRIVER.wasm BATCHES BATCH_MS [--only NAME] [--perfmap]
//!
//! Prints JSON: {"engine", "call_ns", "variants": {name: {"first": what the first request did,
//! "batches": [{"n", "cpu_ns", "wall_ns", "host": {import: [calls, ns inside]}}]}}}. run.py
//! checks `first`, tabulates, and runs host_v8.mjs (the same host in JavaScript, under V8).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use wasmtime::{
    Caller, Config, Engine, Extern, Linker, Memory, Module, ProfilingStrategy, Store, TypedFunc,
    Val,
};

type Res<T> = wasmtime::Result<T>;

// proxy-wasm status codes (proxy-wasm-0.2.5/src/types.rs; 12 = Unimplemented in the ABI).
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const UNIMPLEMENTED: i32 = 12;
const PLUGIN_CONFIGURATION: i32 = 7;
const REQUEST_HEADERS: i32 = 0;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The host's side of one module instance.
#[derive(Default)]
struct Host {
    config: Vec<u8>,
    template: Pairs,
    headers: Pairs,
    local: Option<i32>,
    logs: Vec<Vec<u8>>,
    metrics: Vec<i64>,
    /// Per import: name, calls, nanoseconds spent inside.
    stats: Vec<(String, u64, u64)>,
    memory: Option<Memory>,
    alloc: Option<TypedFunc<i32, i32>>,
    rng: u64,
    /// A header whose value changes every request (a DPoP proof is sent once): its name, the
    /// values in order, the next one, and how many requests found them used up (sent again).
    rotate: Option<(Vec<u8>, Vec<Vec<u8>>)>,
    rotate_next: usize,
    reused: u64,
}

fn err(msg: &str) -> wasmtime::Error {
    wasmtime::Error::msg(msg.to_string())
}

fn memory(c: &Caller<'_, Host>) -> Res<Memory> {
    c.data().memory.ok_or_else(|| err("no memory yet"))
}

fn read(c: &mut Caller<'_, Host>, ptr: i32, len: i32) -> Res<Vec<u8>> {
    let m = memory(c)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    m.data(&c)
        .get(ptr..ptr + len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| err("read out of bounds"))
}

fn write(c: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) -> Res<()> {
    let m = memory(c)?;
    m.write(c, ptr as u32 as usize, bytes)?;
    Ok(())
}

/// Bytes handed to the guest in memory it allocates (proxy_on_memory_allocate).
fn give(c: &mut Caller<'_, Host>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> Res<i32> {
    let mut ptr = 0;
    if !data.is_empty() {
        let alloc = c.data().alloc.clone().ok_or_else(|| err("no allocator"))?;
        ptr = alloc.call(&mut *c, data.len() as i32)?;
        write(c, ptr, data)?;
    }
    write(c, ptr_ptr, &(ptr as u32).to_le_bytes())?;
    write(c, size_ptr, &(data.len() as u32).to_le_bytes())?;
    Ok(OK)
}

/// proxy-wasm map: u32 count, per pair u32 key_len u32 value_len, then key\0 value\0.
fn serialize_map(pairs: &Pairs) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| 10 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend((pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn parse_map(data: &[u8]) -> Option<Pairs> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let n = u32_at(0)?;
    let mut pos = 4 + 8 * n;
    let mut out = Vec::new();
    for i in 0..n {
        let (kl, vl) = (u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?);
        let k = data.get(pos..pos + kl)?.to_vec();
        pos += kl + 1;
        out.push((k, data.get(pos..pos + vl)?.to_vec()));
        pos += vl + 1;
    }
    Some(out)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Count and time one host call (the time inside the host function, wall clock).
fn timed<R>(
    c: &mut Caller<'_, Host>,
    idx: usize,
    f: impl FnOnce(&mut Caller<'_, Host>) -> Res<R>,
) -> Res<R> {
    let t0 = Instant::now();
    let r = f(c);
    let ns = t0.elapsed().as_nanos() as u64;
    if let Some(s) = c.data_mut().stats.get_mut(idx) {
        s.1 += 1;
        s.2 += ns;
    }
    r
}

fn lower(b: Vec<u8>) -> Vec<u8> {
    b.to_ascii_lowercase()
}

/// Define `module.name` for the filter: the real function when the request path (or the
/// start) uses it, a counted stub answering Unimplemented otherwise.
fn define(
    linker: &mut Linker<Host>,
    store: &mut Store<Host>,
    module: &str,
    name: &str,
    ty: wasmtime::FuncType,
) -> Res<()> {
    let idx = store.data().stats.len();
    let m = module;
    macro_rules! wrap {
        (|$c:ident $(, $a:ident : $t:ty)*| $body:expr) => {
            {
                linker.func_wrap(m, name, move |mut $c: Caller<'_, Host> $(, $a: $t)*| -> Res<i32> {
                    timed(&mut $c, idx, |$c| {
                        let _ = &$c;
                        $body
                    })
                })?;
            }
        };
    }
    let mut real = true;
    match (module, name) {
        ("env", "proxy_log") => wrap!(|c, _level: i32, p: i32, n: i32| {
            let line = read(c, p, n)?;
            c.data_mut().logs.push(line);
            Ok(OK)
        }),
        ("env", "proxy_get_current_time_nanoseconds") => wrap!(|c, ret: i32| {
            write(c, ret, &now_ns().to_le_bytes())?;
            Ok(OK)
        }),
        ("env", "proxy_get_buffer_bytes") => {
            wrap!(|c, kind: i32, start: i32, size: i32, rp: i32, rs: i32| {
                if kind != PLUGIN_CONFIGURATION {
                    return Ok(NOT_FOUND);
                }
                let cfg = c.data().config.clone();
                let start = (start as u32 as usize).min(cfg.len());
                let end = start.saturating_add(size as u32 as usize).min(cfg.len());
                give(c, &cfg[start..end], rp, rs)
            })
        }
        ("env", "proxy_get_header_map_pairs") => wrap!(|c, kind: i32, rp: i32, rs: i32| {
            let data = if kind == REQUEST_HEADERS {
                serialize_map(&c.data().headers)
            } else {
                serialize_map(&Vec::new())
            };
            give(c, &data, rp, rs)
        }),
        ("env", "proxy_get_header_map_value") => {
            wrap!(|c, kind: i32, kp: i32, ks: i32, rp: i32, rs: i32| {
                let key = lower(read(c, kp, ks)?);
                let found = if kind == REQUEST_HEADERS {
                    c.data()
                        .headers
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.clone())
                } else {
                    None
                };
                match found {
                    Some(v) => give(c, &v, rp, rs),
                    None => Ok(NOT_FOUND),
                }
            })
        }
        ("env", "proxy_remove_header_map_value") => wrap!(|c, kind: i32, kp: i32, ks: i32| {
            let key = lower(read(c, kp, ks)?);
            if kind == REQUEST_HEADERS {
                c.data_mut().headers.retain(|(k, _)| *k != key);
            }
            Ok(OK)
        }),
        ("env", "proxy_replace_header_map_value") => {
            wrap!(|c, kind: i32, kp: i32, ks: i32, vp: i32, vs: i32| {
                let key = lower(read(c, kp, ks)?);
                let value = read(c, vp, vs)?;
                if kind == REQUEST_HEADERS {
                    let h = &mut c.data_mut().headers;
                    h.retain(|(k, _)| *k != key);
                    h.push((key, value));
                }
                Ok(OK)
            })
        }
        ("env", "proxy_add_header_map_value") => {
            wrap!(|c, kind: i32, kp: i32, ks: i32, vp: i32, vs: i32| {
                let key = lower(read(c, kp, ks)?);
                let value = read(c, vp, vs)?;
                if kind == REQUEST_HEADERS {
                    c.data_mut().headers.push((key, value));
                }
                Ok(OK)
            })
        }
        ("env", "proxy_send_local_response") => {
            wrap!(|c,
                   status: i32,
                   _dp: i32,
                   _ds: i32,
                   bp: i32,
                   bs: i32,
                   hp: i32,
                   hs: i32,
                   _grpc: i32| {
                read(c, bp, bs)?;
                parse_map(&read(c, hp, hs)?).ok_or_else(|| err("bad header map"))?;
                c.data_mut().local = Some(status);
                Ok(OK)
            })
        }
        ("env", "proxy_continue_stream") => wrap!(|c, _kind: i32| Ok(OK)),
        ("env", "proxy_set_tick_period_milliseconds") => wrap!(|c, _ms: i32| Ok(OK)),
        ("env", "proxy_define_metric") => wrap!(|c, _kind: i32, p: i32, n: i32, ret: i32| {
            read(c, p, n)?;
            c.data_mut().metrics.push(0);
            let id = c.data().metrics.len() as u32;
            write(c, ret, &id.to_le_bytes())?;
            Ok(OK)
        }),
        ("env", "proxy_increment_metric") => wrap!(|c, id: i32, offset: i64| {
            match c.data_mut().metrics.get_mut((id as usize).wrapping_sub(1)) {
                Some(m) => {
                    *m += offset;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        }),
        ("env", "proxy_record_metric") => wrap!(|c, id: i32, value: i64| {
            match c.data_mut().metrics.get_mut((id as usize).wrapping_sub(1)) {
                Some(m) => {
                    *m = value;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        }),
        ("env", "proxy_get_property") => {
            wrap!(|c, _p: i32, _n: i32, _rp: i32, _rs: i32| Ok(NOT_FOUND))
        }
        ("env", "proxy_set_effective_context") => wrap!(|c, _id: i32| Ok(OK)),
        // WASI preview 1: what the module imports (errno 0 = success).
        ("wasi_snapshot_preview1", "random_get") => wrap!(|c, p: i32, n: i32| {
            let mut bytes = Vec::with_capacity(n as usize);
            let mut x = c.data().rng | 1;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push((x >> 24) as u8);
            }
            c.data_mut().rng = x;
            write(c, p, &bytes)?;
            Ok(0)
        }),
        ("wasi_snapshot_preview1", "environ_sizes_get") => wrap!(|c, count: i32, size: i32| {
            write(c, count, &0u32.to_le_bytes())?;
            write(c, size, &0u32.to_le_bytes())?;
            Ok(0)
        }),
        ("wasi_snapshot_preview1", "environ_get") => wrap!(|c, _a: i32, _b: i32| Ok(0)),
        ("wasi_snapshot_preview1", "clock_time_get") => {
            wrap!(|c, _id: i32, _precision: i64, ret: i32| {
                write(c, ret, &now_ns().to_le_bytes())?;
                Ok(0)
            })
        }
        ("wasi_snapshot_preview1", "fd_write") => {
            wrap!(|c, _fd: i32, iovs: i32, n: i32, ret: i32| {
                let raw = read(c, iovs, n * 8)?;
                let mut total = 0u32;
                for iov in raw.chunks_exact(8) {
                    let p = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                    let l = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                    eprint!("{}", String::from_utf8_lossy(&read(c, p as i32, l as i32)?));
                    total += l;
                }
                write(c, ret, &total.to_le_bytes())?;
                Ok(0)
            })
        }
        ("wasi_snapshot_preview1", "proc_exit") => {
            linker.func_wrap(m, name, |code: i32| -> Res<()> {
                Err(err(&format!("proc_exit({code})")))
            })?;
        }
        _ => {
            real = false;
            let results = ty.results().count();
            linker.func_new(m, name, ty, move |mut c, _params, out| {
                if let Some(s) = c.data_mut().stats.get_mut(idx) {
                    s.1 += 1;
                }
                for r in out.iter_mut().take(results) {
                    *r = Val::I32(UNIMPLEMENTED);
                }
                Ok(())
            })?;
        }
    }
    let shown = if real {
        name.to_string()
    } else {
        format!("{name} (stub)")
    };
    store.data_mut().stats.push((shown, 0, 0));
    Ok(())
}

struct Run {
    store: Store<Host>,
    run: TypedFunc<(i32, i32), i32>,
    calls: TypedFunc<i32, i32>,
    next: i32,
}

impl Run {
    fn new(
        engine: &Engine,
        module: &Module,
        driver: &Module,
        config: &str,
        headers: &Value,
        rotate: &Value,
    ) -> Res<Run> {
        let pairs = headers
            .as_array()
            .ok_or_else(|| err("headers"))?
            .iter()
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_str()?.as_bytes().to_vec(),
                    p.get(1)?.as_str()?.as_bytes().to_vec(),
                ))
            })
            .collect();
        let host = Host {
            config: config.as_bytes().to_vec(),
            template: pairs,
            rng: 0x9E37_79B9_7F4A_7C15,
            rotate: rotate.get("header").and_then(Value::as_str).map(|name| {
                let values = rotate["values"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                (
                    name.as_bytes().to_vec(),
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|v| v.as_bytes().to_vec())
                        .collect(),
                )
            }),
            ..Host::default()
        };
        let mut store = Store::new(engine, host);
        let mut linker = Linker::new(engine);
        for imp in module.imports() {
            let ty = imp.ty().func().cloned().ok_or_else(|| {
                err(&format!(
                    "non-function import {}.{}",
                    imp.module(),
                    imp.name()
                ))
            })?;
            if imp.module() != "env" && imp.module() != "wasi_snapshot_preview1" {
                return Err(err(&format!(
                    "unexpected import {}.{}",
                    imp.module(),
                    imp.name()
                )));
            }
            define(&mut linker, &mut store, imp.module(), imp.name(), ty)?;
        }
        let instance = linker.instantiate(&mut store, module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| err("no memory export"))?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);

        let begin_idx = store.data().stats.len();
        store
            .data_mut()
            .stats
            .push(("(harness) begin".into(), 0, 0));
        let empty_idx = begin_idx + 1;
        store
            .data_mut()
            .stats
            .push(("(harness) empty".into(), 0, 0));
        let mut dlinker: Linker<Host> = Linker::new(engine);
        dlinker.instance(&mut store, "filter", instance)?;
        dlinker.func_wrap(
            "bench",
            "begin",
            move |mut c: Caller<'_, Host>, _id: i32| -> Res<i32> {
                timed(&mut c, begin_idx, |c| {
                    let h = c.data_mut();
                    h.headers = h.template.clone();
                    if let Some((name, values)) = &h.rotate {
                        if !values.is_empty() {
                            if h.rotate_next >= values.len() {
                                h.reused += 1;
                            }
                            h.headers
                                .push((name.clone(), values[h.rotate_next % values.len()].clone()));
                            h.rotate_next += 1;
                        }
                    }
                    h.local = None;
                    h.logs.clear();
                    Ok(h.headers.len() as i32)
                })
            },
        )?;
        dlinker.func_wrap(
            "bench",
            "empty",
            move |mut c: Caller<'_, Host>, _a: i32, _b: i32, _x: i32| -> Res<i32> {
                timed(&mut c, empty_idx, |_| Ok(0))
            },
        )?;
        let d = dlinker.instantiate(&mut store, driver)?;
        let run = d.get_typed_func::<(i32, i32), i32>(&mut store, "run")?;
        let calls = d.get_typed_func::<i32, i32>(&mut store, "calls")?;

        let call0 = |store: &mut Store<Host>, name: &str| -> Res<wasmtime::Func> {
            match instance.get_export(&mut *store, name) {
                Some(Extern::Func(f)) => Ok(f),
                _ => Err(err(&format!("no export {name}"))),
            }
        };
        call0(&mut store, "_initialize")?
            .typed::<(), ()>(&store)?
            .call(&mut store, ())?;
        call0(&mut store, "proxy_on_context_create")?
            .typed::<(i32, i32), ()>(&store)?
            .call(&mut store, (1, 0))?;
        let vm = call0(&mut store, "proxy_on_vm_start")?
            .typed::<(i32, i32), i32>(&store)?
            .call(&mut store, (1, 0))?;
        let n = config.len() as i32;
        let conf = call0(&mut store, "proxy_on_configure")?
            .typed::<(i32, i32), i32>(&store)?
            .call(&mut store, (1, n))?;
        if vm == 0 || conf == 0 {
            return Err(err(
                "proxy_on_vm_start or proxy_on_configure returned false",
            ));
        }
        Ok(Run {
            store,
            run,
            calls,
            next: 2,
        })
    }

    fn requests(&mut self, n: i32) -> Res<i32> {
        let first = self.next;
        self.next += n;
        self.run.call(&mut self.store, (first, n))
    }

    fn reset(&mut self) {
        for s in &mut self.store.data_mut().stats {
            s.1 = 0;
            s.2 = 0;
        }
    }
}

/// ns (wall clock) one guest→host call costs beyond the time measured inside it: the least
/// disturbed of 7 runs.
fn calibrate(r: &mut Run) -> Res<f64> {
    let idx = r
        .store
        .data()
        .stats
        .iter()
        .position(|s| s.0 == "(harness) empty")
        .unwrap_or(0);
    r.calls.call(&mut r.store, 20000)?;
    let mut best = f64::MAX;
    for _ in 0..7 {
        r.reset();
        let n = 500_000;
        let t0 = Instant::now();
        r.calls.call(&mut r.store, n)?;
        let wall = t0.elapsed().as_nanos() as f64;
        best = best.min((wall - r.store.data().stats[idx].2 as f64) / n as f64);
    }
    Ok(best)
}

fn batches(r: &mut Run, weight: f64, batches: usize, batch_ms: f64) -> Res<Value> {
    let action = r.requests(1)?;
    let h = r.store.data();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let first = json!({
        "action": action,
        "status": h.local,
        "headers": h.headers.iter().map(|(k, v)| [text(k), text(v)]).collect::<Vec<_>>(),
        "logs": h.logs.iter().map(|l| text(l)).collect::<Vec<_>>(),
    });
    // Size a batch to about batch_ms, then warm up for about 0.5 s.
    let mut n = 50;
    let took = loop {
        let t0 = Instant::now();
        r.requests(n)?;
        let took = t0.elapsed().as_secs_f64();
        if took > 0.05 * weight || n >= 200_000 {
            break took;
        }
        n *= 2;
    };
    let per_req = took / n as f64;
    r.requests(((0.5 * weight / per_req) as i32).max(1))?;
    let size = ((batch_ms / 1000.0 * weight / per_req) as i32).max(20);
    let mut out = Vec::new();
    for _ in 0..batches {
        r.reset();
        let (w0, c0) = (Instant::now(), thread_cpu_ns());
        let actions = r.requests(size)?;
        let (c1, wall) = (thread_cpu_ns(), w0.elapsed().as_nanos() as u64);
        let host: BTreeMap<String, [u64; 2]> = r
            .store
            .data()
            .stats
            .iter()
            .filter(|s| s.1 > 0)
            .map(|s| (s.0.clone(), [s.1, s.2]))
            .collect();
        out.push(json!({"n": size, "cpu_ns": c1 - c0, "wall_ns": wall, "actions": actions, "host": host}));
    }
    Ok(json!({"first": first, "batches": out, "reused": r.store.data().reused}))
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(err(
            "usage: wasm-host SCENARIO.json DRIVER.wasm BATCHES BATCH_MS [--only NAME] [--perfmap]",
        ));
    }
    let sc: Value = serde_json::from_slice(&std::fs::read(&args[1])?)?;
    let batches_n: usize = args[3].parse()?;
    let batch_ms: f64 = args[4].parse()?;
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut config = Config::new();
    if args.iter().any(|a| a == "--perfmap") {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    let driver = Module::from_file(&engine, &args[2])?;
    let mut modules: BTreeMap<String, Module> = BTreeMap::new();
    let mut variants = serde_json::Map::new();
    let mut call_ns = None;
    for v in sc["variants"]
        .as_array()
        .ok_or_else(|| err("no variants"))?
    {
        let name = v["name"].as_str().unwrap_or("?").to_string();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let path = v["module"].as_str().unwrap_or_default().to_string();
        if !modules.contains_key(&path) {
            modules.insert(path.clone(), Module::from_file(&engine, &path)?);
        }
        let module = &modules[&path];
        let mut r = Run::new(
            &engine,
            module,
            &driver,
            v["config"].as_str().unwrap_or(""),
            &v["headers"],
            &v["rotate"],
        )
        .map_err(|e| err(&format!("{name}: {e:#}")))?;
        if call_ns.is_none() {
            call_ns = Some(calibrate(&mut r)?);
        }
        let weight = v["weight"].as_f64().unwrap_or(1.0);
        let b = batches(&mut r, weight, batches_n, batch_ms)
            .map_err(|e| err(&format!("{name}: {e:#}")))?;
        variants.insert(name, b);
    }
    let out =
        json!({"engine": "Wasmtime 26.0.1 (Rust host)", "call_ns": call_ns, "variants": variants});
    println!("{out}");
    Ok(())
}
