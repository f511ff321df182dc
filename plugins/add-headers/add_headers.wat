;; add-headers: adds and removes request and response headers (Proxy-Wasm ABI 0.2.1).
;;
;; Configuration: one rule per line
;;   +name: value   add a request header        -name   remove a request header
;;   >name: value   add a response header       <name   remove a response header
;; Response rules need `phase: on_response_headers` in Loom.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0/4: host return slots; 1024..: configuration copy; 65536..: heap (bump, wraps)
  (global $heap (mut i32) (i32.const 65536))
  (global $cfg_len (mut i32) (i32.const 0))

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

  ;; Keeps a copy of the configuration (at most 63 KiB).
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 64000)) (then (return (i32.const 0))))
    (if (i32.eqz (local.get $size)) (then (return (i32.const 1))))
    (if (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (global.set $cfg_len (i32.load (i32.const 4)))
    (memory.copy (i32.const 1024) (i32.load (i32.const 0)) (global.get $cfg_len))
    (i32.const 1))

  ;; Applies the rules whose first byte is $addc / $remc to header map $map.
  (func $apply (param $map i32) (param $addc i32) (param $remc i32)
    (local $i i32) (local $end i32) (local $line i32) (local $eol i32) (local $colon i32) (local $v i32)
    (local.set $i (i32.const 1024))
    (local.set $end (i32.add (i32.const 1024) (global.get $cfg_len)))
    (block $done
      (loop $lines
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $line (local.get $i))
        ;; find the end of the line and the first ':'
        (local.set $colon (i32.const 0))
        (block $found
          (loop $scan
            (br_if $found (i32.ge_u (local.get $i) (local.get $end)))
            (br_if $found (i32.eq (i32.load8_u (local.get $i)) (i32.const 10)))
            (if (i32.and (i32.eqz (local.get $colon)) (i32.eq (i32.load8_u (local.get $i)) (i32.const 58)))
              (then (local.set $colon (local.get $i))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $scan)))
        (local.set $eol (local.get $i))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.and (i32.eq (i32.load8_u (local.get $line)) (local.get $addc)) (i32.ne (local.get $colon) (i32.const 0)))
          (then
            ;; value starts after ": " (spaces skipped)
            (local.set $v (i32.add (local.get $colon) (i32.const 1)))
            (block $trim (loop $sp
              (br_if $trim (i32.ge_u (local.get $v) (local.get $eol)))
              (br_if $trim (i32.ne (i32.load8_u (local.get $v)) (i32.const 32)))
              (local.set $v (i32.add (local.get $v) (i32.const 1)))
              (br $sp)))
            (drop (call $add (local.get $map)
              (i32.add (local.get $line) (i32.const 1)) (i32.sub (i32.sub (local.get $colon) (local.get $line)) (i32.const 1))
              (local.get $v) (i32.sub (local.get $eol) (local.get $v))))))
        (if (i32.eq (i32.load8_u (local.get $line)) (local.get $remc))
          (then (drop (call $remove (local.get $map)
            (i32.add (local.get $line) (i32.const 1)) (i32.sub (i32.sub (local.get $eol) (local.get $line)) (i32.const 1))))))
        (br $lines))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $apply (i32.const 0) (i32.const 43) (i32.const 45)) ;; '+' '-'
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $apply (i32.const 2) (i32.const 62) (i32.const 60)) ;; '>' '<'
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
