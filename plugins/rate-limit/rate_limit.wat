;; rate-limit: at most N requests per second per gateway worker, counted in Proxy-Wasm shared data
;; with compare-and-swap, the window reset by a 1 s tick (ABI 0.2.1). Over the limit: 429.
;;
;; Configuration: the limit as a decimal number, e.g. "100".
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0/4: host return slots, 8: cas, 12: value to store
  (global $heap (mut i32) (i32.const 65536))
  (global $limit (mut i32) (i32.const 100))
  (data (i32.const 1024) "rate-limit/count") ;; 16
  (data (i32.const 1040) "too many requests\0a") ;; 18
  (data (i32.const 1064) "\01\00\00\00\0b\00\00\00\01\00\00\00retry-after\001\00") ;; 26

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072))
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $n i32) (local $c i32)
    (if (local.get $size)
      (then
        (if (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
          (then (return (i32.const 0))))
        (local.set $p (i32.load (i32.const 0)))
        (local.set $end (i32.add (local.get $p) (i32.load (i32.const 4))))
        (block $done
          (loop $digits
            (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
            (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
            (if (i32.gt_u (local.get $c) (i32.const 9)) (then (return (i32.const 0)))) ;; not a number
            (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $c)))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $digits)))
        (global.set $limit (local.get $n))))
    (drop (call $tick (i32.const 1000)))
    (i32.const 1))

  ;; New window: the counter goes back to 0.
  (func (export "proxy_on_tick") (param i32)
    (i32.store (i32.const 12) (i32.const 0))
    (drop (call $set_shared (i32.const 1024) (i32.const 16) (i32.const 12) (i32.const 4) (i32.const 0))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $count i32)
    (loop $retry
      (if (call $get_shared (i32.const 1024) (i32.const 16) (i32.const 0) (i32.const 4) (i32.const 8))
        (then (local.set $count (i32.const 0)) (i32.store (i32.const 8) (i32.const 0)))
        (else (local.set $count (i32.load (i32.load (i32.const 0))))))
      (if (i32.ge_u (local.get $count) (global.get $limit))
        (then
          (drop (call $reply (i32.const 429) (i32.const 0) (i32.const 0) (i32.const 1040) (i32.const 18)
            (i32.const 1064) (i32.const 26) (i32.const -1)))
          (return (i32.const 1))))
      (i32.store (i32.const 12) (i32.add (local.get $count) (i32.const 1)))
      ;; CAS_MISMATCH (8): another request updated the counter first; read again.
      (br_if $retry (i32.eq (i32.const 8)
        (call $set_shared (i32.const 1024) (i32.const 16) (i32.const 12) (i32.const 4) (i32.load (i32.const 8))))))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
