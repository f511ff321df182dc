;; lifecycle: root-context teardown and crash loops (Proxy-Wasm ABI 0.2.1).
;;
;; - proxy_on_done(root) returns false and remembers it; the next on_tick calls
;;   proxy_done. Metrics: root_done (on_done(root) calls), done_ok (proxy_done
;;   returned OK), deleted_in_done (on_delete(root) ran inside proxy_done:
;;   must stay 0), root_deleted (on_delete(root) calls), done_early
;;   (proxy_done before on_done: must be refused, NOT_FOUND).
;; - Stream contexts: proxy_on_done returns false too; as in the reference
;;   host, that does not hold back on_log/on_delete (only root contexts wait
;;   for proxy_done). on_log calls proxy_done, which must be NOT_FOUND for a
;;   stream context. Metrics: stream_done (on_done(stream) calls),
;;   stream_logged, stream_deleted, stream_done_nf (proxy_done NOT_FOUND).
;; - Configuration "x": every on_request_headers traps (crash loop).
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0/4: host return slots; 16..51: metric ids; 256..: names; 65536..: heap
  (data (i32.const 256) "root_done")        ;; 9
  (data (i32.const 272) "done_ok")          ;; 7
  (data (i32.const 288) "deleted_in_done")  ;; 15
  (data (i32.const 304) "root_deleted")     ;; 12
  (data (i32.const 320) "done_early")       ;; 10
  (data (i32.const 336) "stream_done")      ;; 11
  (data (i32.const 352) "stream_logged")    ;; 13
  (data (i32.const 368) "stream_deleted")   ;; 14
  (data (i32.const 384) "stream_done_nf")   ;; 14
  (global $heap (mut i32) (i32.const 65536))
  (global $root (mut i32) (i32.const -1))
  (global $waiting (mut i32) (i32.const 0))
  (global $in_done (mut i32) (i32.const 0))
  (global $trap (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072))
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (i32.eqz (local.get $parent)) (then (global.set $root (local.get $ctx)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 256) (i32.const 9) (i32.const 16)))
    (drop (call $define (i32.const 0) (i32.const 272) (i32.const 7) (i32.const 20)))
    (drop (call $define (i32.const 0) (i32.const 288) (i32.const 15) (i32.const 24)))
    (drop (call $define (i32.const 0) (i32.const 304) (i32.const 12) (i32.const 28)))
    (drop (call $define (i32.const 0) (i32.const 320) (i32.const 10) (i32.const 32)))
    (drop (call $define (i32.const 0) (i32.const 336) (i32.const 11) (i32.const 36)))
    (drop (call $define (i32.const 0) (i32.const 352) (i32.const 13) (i32.const 40)))
    (drop (call $define (i32.const 0) (i32.const 368) (i32.const 14) (i32.const 44)))
    (drop (call $define (i32.const 0) (i32.const 384) (i32.const 14) (i32.const 48)))
    ;; proxy_done before on_done(root) is refused
    (if (i32.ne (call $done) (i32.const 0))
      (then (drop (call $inc (i32.load (i32.const 32)) (i64.const 1)))))
    (drop (call $tick (i32.const 10)))
    (if (i32.eqz (local.get $size)) (then (return (i32.const 1))))
    (if (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (global.set $trap (i32.eq (i32.load8_u (i32.load (i32.const 0))) (i32.const 0x78)))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (global.get $trap) (then (unreachable)))
    (i32.const 0))

  (func (export "proxy_on_tick") (param $ctx i32)
    (if (i32.eqz (global.get $waiting)) (then (return)))
    (global.set $waiting (i32.const 0))
    (global.set $in_done (i32.const 1))
    (if (i32.eqz (call $done)) (then (drop (call $inc (i32.load (i32.const 20)) (i64.const 1)))))
    (global.set $in_done (i32.const 0)))

  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (if (i32.ne (local.get $ctx) (global.get $root))
      (then
        (drop (call $inc (i32.load (i32.const 36)) (i64.const 1)))
        (return (i32.const 0))))
    (drop (call $inc (i32.load (i32.const 16)) (i64.const 1)))
    (global.set $waiting (i32.const 1))
    (i32.const 0))

  (func (export "proxy_on_log") (param $ctx i32)
    (if (i32.eq (local.get $ctx) (global.get $root)) (then (return)))
    (drop (call $inc (i32.load (i32.const 40)) (i64.const 1)))
    ;; NOT_FOUND (1): a stream context is never pending finalization.
    (if (i32.eq (call $done) (i32.const 1))
      (then (drop (call $inc (i32.load (i32.const 48)) (i64.const 1))))))

  (func (export "proxy_on_delete") (param $ctx i32)
    (if (i32.ne (local.get $ctx) (global.get $root))
      (then
        (drop (call $inc (i32.load (i32.const 44)) (i64.const 1)))
        (return)))
    (drop (call $inc (i32.load (i32.const 28)) (i64.const 1)))
    (if (global.get $in_done) (then (drop (call $inc (i32.load (i32.const 24)) (i64.const 1))))))
)
