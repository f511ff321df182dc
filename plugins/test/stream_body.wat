;; stream_body: exercises streamed response bodies (Proxy-Wasm ABI 0.2.1).
;;
;; on_response_body upper-cases each chunk it is given and continues (so the
;; body streams through), counting calls in metrics:
;;   stream_body_calls, stream_body_eos (calls with end_of_stream),
;;   stream_body_bytes (sum of body_size arguments), stream_trailers.
;; With configuration "B" it instead pauses (StopIterationAndBuffer) until
;; end_of_stream and then upper-cases the cumulative body.
;; on_response_trailers adds the response trailer `x-wasm-trailer: seen`.
;; on_request_body does the same to the request body (metrics req_body_calls,
;; req_body_eos, req_body_bytes; req_trailers counts on_request_trailers).
;; With configuration "L" it answers 403 "denied" locally at the request
;; body's end_of_stream (after earlier chunks went upstream).
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0/4: host return slots; 16..47: metric ids; 256..: strings; 65536..: heap (bump, wraps)
  (data (i32.const 256) "stream_body_calls")   ;; 17
  (data (i32.const 288) "stream_body_eos")     ;; 15
  (data (i32.const 320) "stream_body_bytes")   ;; 17
  (data (i32.const 352) "stream_trailers")     ;; 15
  (data (i32.const 384) "x-wasm-trailer")      ;; 14
  (data (i32.const 400) "seen")                ;; 4
  (data (i32.const 416) "req_body_calls")      ;; 14
  (data (i32.const 432) "req_body_eos")        ;; 12
  (data (i32.const 448) "req_body_bytes")      ;; 14
  (data (i32.const 464) "req_trailers")        ;; 12
  (data (i32.const 480) "denied")              ;; 6
  (global $heap (mut i32) (i32.const 65536))
  (global $mode (mut i32) (i32.const 0))

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
    (drop (call $define (i32.const 0) (i32.const 256) (i32.const 17) (i32.const 16)))
    (drop (call $define (i32.const 0) (i32.const 288) (i32.const 15) (i32.const 20)))
    (drop (call $define (i32.const 0) (i32.const 320) (i32.const 17) (i32.const 24)))
    (drop (call $define (i32.const 0) (i32.const 352) (i32.const 15) (i32.const 28)))
    (drop (call $define (i32.const 0) (i32.const 416) (i32.const 14) (i32.const 32)))
    (drop (call $define (i32.const 0) (i32.const 432) (i32.const 12) (i32.const 36)))
    (drop (call $define (i32.const 0) (i32.const 448) (i32.const 14) (i32.const 40)))
    (drop (call $define (i32.const 0) (i32.const 464) (i32.const 12) (i32.const 44)))
    (if (i32.eqz (local.get $size)) (then (return (i32.const 1))))
    (if (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (global.set $mode (i32.load8_u (i32.load (i32.const 0))))
    (i32.const 1))

  ;; Upper-cases bytes [p, p+n).
  (func $upper (param $p i32) (param $n i32)
    (local $i i32) (local $c i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 0x61)) (i32.le_u (local.get $c) (i32.const 0x7a)))
          (then (i32.store8 (i32.add (local.get $p) (local.get $i)) (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (drop (call $inc (i32.load (i32.const 16)) (i64.const 1)))
    (drop (call $inc (i32.load (i32.const 24)) (i64.extend_i32_u (local.get $size))))
    (if (local.get $eos) (then (drop (call $inc (i32.load (i32.const 20)) (i64.const 1)))))
    ;; "B": StopIterationAndBuffer until the end, then rewrite the cumulative body.
    (if (i32.and (i32.eq (global.get $mode) (i32.const 0x42)) (i32.eqz (local.get $eos)))
      (then (return (i32.const 1))))
    (if (i32.eqz (local.get $size)) (then (return (i32.const 0))))
    (if (call $get_buffer (i32.const 1) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (call $upper (i32.load (i32.const 0)) (i32.load (i32.const 4)))
    (drop (call $set_buffer (i32.const 1) (i32.const 0) (local.get $size)
      (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (i32.const 0))

  (func (export "proxy_on_response_trailers") (param $ctx i32) (param $n i32) (result i32)
    (drop (call $inc (i32.load (i32.const 28)) (i64.const 1)))
    (drop (call $add (i32.const 3) (i32.const 384) (i32.const 14) (i32.const 400) (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (drop (call $inc (i32.load (i32.const 32)) (i64.const 1)))
    (drop (call $inc (i32.load (i32.const 40)) (i64.extend_i32_u (local.get $size))))
    (if (local.get $eos) (then (drop (call $inc (i32.load (i32.const 36)) (i64.const 1)))))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 0x42)) (i32.eqz (local.get $eos)))
      (then (return (i32.const 1))))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 0x4c)) (local.get $eos))
      (then
        (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 480) (i32.const 6)
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (if (i32.eqz (local.get $size)) (then (return (i32.const 0))))
    (if (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (call $upper (i32.load (i32.const 0)) (i32.load (i32.const 4)))
    (drop (call $set_buffer (i32.const 0) (i32.const 0) (local.get $size)
      (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (i32.const 0))
  (func (export "proxy_on_request_trailers") (param $ctx i32) (param $n i32) (result i32)
    (drop (call $inc (i32.load (i32.const 44)) (i64.const 1)))
    (i32.const 0))
)
