;; The request loop, in wasm, so that no host-to-guest call from Python or JavaScript sits inside
;; a measured batch: `run` drives `n` requests through the filter instance's exports exactly like
;; a proxy host does, and `calls` calibrates what one guest-to-host call costs in this harness.
;; Shared by run.py (Wasmtime) and host_v8.mjs (V8).
(module
  (import "filter" "proxy_on_context_create" (func $create (param i32 i32)))
  (import "filter" "proxy_on_request_headers" (func $headers (param i32 i32 i32) (result i32)))
  (import "filter" "proxy_on_log" (func $log (param i32)))
  (import "filter" "proxy_on_done" (func $done (param i32) (result i32)))
  (import "filter" "proxy_on_delete" (func $delete (param i32)))
  ;; Harness only: a fresh copy of the request's headers for context `id`; returns their count.
  (import "bench" "begin" (func $begin (param i32) (result i32)))
  ;; Harness only: does nothing (calibration of the guest-to-host call).
  (import "bench" "empty" (func $empty (param i32 i32 i32) (result i32)))

  ;; Requests `first` .. `first + n - 1` (context ids; the root context is 1). Returns the sum
  ;; of the actions `proxy_on_request_headers` returned (0 Continue, 1 Pause).
  (func (export "run") (param $first i32) (param $n i32) (result i32)
    (local $id i32) (local $end i32) (local $actions i32) (local $count i32)
    (local.set $id (local.get $first))
    (local.set $end (i32.add (local.get $first) (local.get $n)))
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $id) (local.get $end)))
        (local.set $count (call $begin (local.get $id)))
        (call $create (local.get $id) (i32.const 1))
        (local.set $actions
          (i32.add (local.get $actions)
                   (call $headers (local.get $id) (local.get $count) (i32.const 1))))
        (call $log (local.get $id))
        (drop (call $done (local.get $id)))
        (call $delete (local.get $id))
        (local.set $id (i32.add (local.get $id) (i32.const 1)))
        (br $next)))
    (local.get $actions))

  ;; `n` calls of the empty host function.
  (func (export "calls") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc
          (i32.add (local.get $acc) (call $empty (local.get $i) (i32.const 2) (i32.const 3))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $acc)))
