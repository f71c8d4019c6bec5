;; WASI-NN guest without an exported memory: the host cannot reach its pointers and answers missing_memory (3).
(module
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (memory 1)
  (data (i32.const 0) "default")
  (func (export "run") (result i32) (call $load_by_name (i32.const 0) (i32.const 7) (i32.const 16)))
)
