;; echo: answers every request with its own bytes. The reference reactor guest of ABI v1 (docs/abi.md).
;; Allocation is a bump heap that can give back its topmost block; the response is one reused buffer,
;; which edge_free leaves alone (the ABI allows a static response buffer).
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (global $out_ptr (mut i32) (i32.const 0))
  (global $out_cap (mut i32) (i32.const 0))

  (func $alloc (export "edge_alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 15)) (i32.const -16)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $p)) (then (return (i32.const 0))))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                                      (i32.const 16))))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "edge_free") (param $ptr i32) (param $size i32)
    (if (i32.eq (local.get $ptr) (global.get $out_ptr)) (then (return)))
    (if (i32.eq (i32.add (local.get $ptr) (local.get $size)) (global.get $heap))
      (then (global.set $heap (local.get $ptr)))))

  (func (export "edge_abi_version") (result i32) (i32.const 1))

  (func (export "infer") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.gt_u (local.get $len) (global.get $out_cap))
      (then
        (global.set $out_ptr (call $alloc (local.get $len)))
        (if (i32.eqz (global.get $out_ptr)) (then (unreachable)))
        (global.set $out_cap (local.get $len))))
    (memory.copy (global.get $out_ptr) (local.get $ptr) (local.get $len))
    (i64.or (i64.shl (i64.extend_i32_u (global.get $out_ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
