;; absurd_len: infer returns a response length of almost 4 GiB.
;; A misbehaving guest for tests: a valid ABI v1 reactor in every other respect.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "edge_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.eq (i32.const -1) (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1))))
              (then (return (i32.const 0))))))
    (local.get $p))
  (func (export "edge_free") (param i32 i32))
  (func (export "infer") (param i32 i32) (result i64)
    (i64.const 0x00000400fffffff0)))
