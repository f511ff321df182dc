;; body-rewrite: buffers the whole body (it pauses in the body callback until the end of the stream,
;; so the host keeps buffering and calls again with the cumulative size), then replaces every
;; occurrence of the byte given as first character of the configuration by the second one
;; (default "a" -> "4"), in the request body (phase on_request_body) or the response body
;; (phase on_response_body). Proxy-Wasm ABI 0.2.1.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $from (mut i32) (i32.const 0x61))
  (global $to (mut i32) (i32.const 0x34))

  (func (export "proxy_abi_version_0_2_1"))
  ;; Bodies can be large: grow memory as needed, reuse it from the start per callback.
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32) (local $need i32)
    (local.set $p (global.get $heap))
    (local.set $need (i32.add (local.get $p) (local.get $n)))
    (if (i32.gt_u (local.get $need) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $need) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $need))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (i32.ge_u (local.get $size) (i32.const 2))
      (then
        (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 2) (i32.const 0) (i32.const 4)))
        (global.set $from (i32.load8_u (i32.load (i32.const 0))))
        (global.set $to (i32.load8_u (i32.add (i32.load (i32.const 0)) (i32.const 1))))))
    (global.set $heap (i32.const 65536))
    (i32.const 1))

  (func $rewrite (param $type i32) (param $size i32) (param $eos i32) (result i32)
    (local $p i32) (local $end i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1)))) ;; keep buffering
    (global.set $heap (i32.const 65536))
    (if (call $get_buffer (local.get $type) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (local.set $p (i32.load (i32.const 0)))
    (local.set $end (i32.add (local.get $p) (i32.load (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (if (i32.eq (i32.load8_u (local.get $p)) (global.get $from))
          (then (i32.store8 (local.get $p) (global.get $to))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (drop (call $set_buffer (local.get $type) (i32.const 0) (local.get $size)
      (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (call $rewrite (i32.const 0) (local.get $size) (local.get $eos)))
  (func (export "proxy_on_response_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (call $rewrite (i32.const 1) (local.get $size) (local.get $eos)))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
