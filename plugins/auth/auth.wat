;; auth: asks an authorization service before letting a request through (Proxy-Wasm ABI 0.2.1).
;;
;; On each request the plugin sends `POST /check` to the Loom upstream named `auth`, with the request's
;; `authorization` header as the body, and pauses the request. A 2xx answer resumes it (with
;; `x-auth: ok` added for the upstream); anything else, or no `authorization` header, answers 401.
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0/4: host return slots, 8: call token; 256..511: token -> request context id (64 slots)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 1024) "authorization")   ;; 13
  (data (i32.const 1040) "auth")            ;; 4
  ;; pairs: :method POST, :path /check, :authority auth
  (data (i32.const 1048) "\03\00\00\00\07\00\00\00\04\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\04\00\00\00:method\00POST\00:path\00/check\00:authority\00auth\00") ;; 28+42=70
  (data (i32.const 1120) ":status")         ;; 7
  (data (i32.const 1128) "x-auth")          ;; 6
  (data (i32.const 1136) "ok")              ;; 2
  (data (i32.const 1144) "unauthorized\0a") ;; 13

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
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func $deny
    (drop (call $reply (i32.const 401) (i32.const 0) (i32.const 0) (i32.const 1144) (i32.const 13)
      (i32.const 0) (i32.const 0) (i32.const -1))))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (call $get (i32.const 0) (i32.const 1024) (i32.const 13) (i32.const 0) (i32.const 4))
      (then (call $deny) (return (i32.const 1))))
    (if (call $call (i32.const 1040) (i32.const 4) (i32.const 1048) (i32.const 70)
          (i32.load (i32.const 0)) (i32.load (i32.const 4)) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 8))
      (then (call $deny) (return (i32.const 1))))
    (i32.store (i32.add (i32.const 256) (i32.shl (i32.and (i32.load (i32.const 8)) (i32.const 63)) (i32.const 2)))
      (local.get $ctx))
    (i32.const 1)) ;; pause until the answer

  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param i32 i32 i32)
    (drop (call $effective
      (i32.load (i32.add (i32.const 256) (i32.shl (i32.and (local.get $token) (i32.const 63)) (i32.const 2))))))
    (if (i32.eqz (call $get (i32.const 6) (i32.const 1120) (i32.const 7) (i32.const 0) (i32.const 4)))
      (then
        (if (i32.eq (i32.load8_u (i32.load (i32.const 0))) (i32.const 0x32)) ;; "2xx"
          (then
            (drop (call $add (i32.const 0) (i32.const 1128) (i32.const 6) (i32.const 1136) (i32.const 2)))
            (drop (call $continue (i32.const 0)))
            (return)))))
    (call $deny))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
