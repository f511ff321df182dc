;; props: echoes Proxy-Wasm properties into response headers (ABI 0.2.1).
;;
;; The configuration lists property paths, one per line, with "." as the
;; path separator (turned into the ABI's NUL separator). For line i,
;; on_response_headers adds the response header `x-prop-<a+i>`: the value in
;; lower-case hex (so tests check the exact encoding), "none" when the host
;; answers NOT_FOUND, "err" for any other status.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0/4: host return slots; 256: header name; 272/280: "none"/"err";
  ;; 1024..2047: configuration copy (the heap wraps); 2048..4095: path; 4096..: hex; 65536..: heap
  (data (i32.const 256) "x-prop-a")
  (data (i32.const 272) "none")
  (data (i32.const 280) "err")
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
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $n i32) (local $i i32) (local $p i32)
    (if (i32.eqz (local.get $size)) (then (return (i32.const 1))))
    (if (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))
      (then (return (i32.const 0))))
    (local.set $p (i32.load (i32.const 0)))
    (local.set $n (i32.load (i32.const 4)))
    (if (i32.gt_u (local.get $n) (i32.const 1024)) (then (return (i32.const 0))))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8 (i32.add (i32.const 1024) (local.get $i))
          (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (global.set $cfg_len (local.get $n))
    (i32.const 1))

  (func $hex (param $v i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $v) (i32.const 10))
      (then (i32.add (local.get $v) (i32.const 48)))
      (else (i32.add (local.get $v) (i32.const 87)))))

  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $start i32) (local $idx i32) (local $c i32) (local $j i32) (local $st i32)
    (local $vp i32) (local $vl i32) (local $k i32) (local $b i32)
    (block $done
      (loop $line
        (br_if $done (i32.ge_u (local.get $start) (global.get $cfg_len)))
        ;; The line, "." turned into NUL, at 2048.
        (local.set $j (i32.const 0))
        (block $eol
          (loop $ch
            (br_if $eol (i32.ge_u (i32.add (local.get $start) (local.get $j)) (global.get $cfg_len)))
            (local.set $c (i32.load8_u (i32.add (i32.const 1024) (i32.add (local.get $start) (local.get $j)))))
            (br_if $eol (i32.eq (local.get $c) (i32.const 10)))
            (if (i32.eq (local.get $c) (i32.const 46)) (then (local.set $c (i32.const 0))))
            (i32.store8 (i32.add (i32.const 2048) (local.get $j)) (local.get $c))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $ch)))
        (i32.store8 (i32.const 263) (i32.add (i32.const 0x61) (local.get $idx)))
        (local.set $st (call $get_property (i32.const 2048) (local.get $j) (i32.const 0) (i32.const 4)))
        (if (i32.eqz (local.get $st))
          (then
            (local.set $vp (i32.load (i32.const 0)))
            (local.set $vl (i32.load (i32.const 4)))
            (local.set $k (i32.const 0))
            (block $hx
              (loop $h
                (br_if $hx (i32.ge_u (local.get $k) (local.get $vl)))
                (local.set $b (i32.load8_u (i32.add (local.get $vp) (local.get $k))))
                (i32.store8 (i32.add (i32.const 4096) (i32.shl (local.get $k) (i32.const 1)))
                  (call $hex (i32.shr_u (local.get $b) (i32.const 4))))
                (i32.store8 (i32.add (i32.const 4097) (i32.shl (local.get $k) (i32.const 1)))
                  (call $hex (i32.and (local.get $b) (i32.const 15))))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $h)))
            (drop (call $add (i32.const 2) (i32.const 256) (i32.const 8)
              (i32.const 4096) (i32.shl (local.get $vl) (i32.const 1)))))
          (else
            (if (i32.eq (local.get $st) (i32.const 1))
              (then (drop (call $add (i32.const 2) (i32.const 256) (i32.const 8) (i32.const 272) (i32.const 4))))
              (else (drop (call $add (i32.const 2) (i32.const 256) (i32.const 8) (i32.const 280) (i32.const 3)))))))
        (local.set $idx (i32.add (local.get $idx) (i32.const 1)))
        (local.set $start (i32.add (i32.add (local.get $start) (local.get $j)) (i32.const 1)))
        (br $line)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
)
