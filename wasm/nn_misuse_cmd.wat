;; WASI command variant of nn_misuse.wat, for running through edgewasm.load / `edgewasm run`: `_start` performs
;; misuses in order, each must get its errno, then a correct inference on the preloaded "default" graph
;; (tests/test_nn_support.py's tiny model: [1,2,3,4] -> [3.5, 3.0, 8.0]). Exit code 0 = all as expected,
;; otherwise the 1-based number of the first step that went wrong.
(module
  (import "wasi_ephemeral_nn" "load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "init_execution_context" (func $init (param i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "set_input" (func $set_input (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output" (func $get_output (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x000) "default")
  (data (i32.const 0x010) "nope")
  (data (i32.const 0x040) "this is not a model")
  (data (i32.const 0x080) "\40\00\00\00\13\00\00\00")
  (data (i32.const 0x200) "\01\00\00\00\04\00\00\00")
  (data (i32.const 0x300) "\00\00\80\3f\00\00\00\40\00\00\40\40\00\00\80\40")
  ;; tensor {dims 0x200, rank 2, f32, data 0x300, len} at 0x400 (len 12 = wrong) and 0x420 (len 16)
  (data (i32.const 0x400) "\00\02\00\00\02\00\00\00\01\00\00\00\00\03\00\00\0c\00\00\00")
  (data (i32.const 0x420) "\00\02\00\00\02\00\00\00\01\00\00\00\00\03\00\00\10\00\00\00")
  (global $step (mut i32) (i32.const 0))
  ;; step n: exit with n unless got == want
  (func $expect (param $got i32) (param $want i32)
    (global.set $step (i32.add (global.get $step) (i32.const 1)))
    (if (i32.ne (local.get $got) (local.get $want)) (then (call $exit (global.get $step)))))
  (func (export "_start") (local $ctx i32)
    (call $expect (call $init (i32.const 12345) (i32.const 0x104)) (i32.const 1))                     ;; 1
    (call $expect (call $load (i32.const 0x80) (i32.const 1) (i32.const 99) (i32.const 0) (i32.const 0x100)) (i32.const 2))
    (call $expect (call $load (i32.const -16) (i32.const 1) (i32.const 1) (i32.const 0) (i32.const 0x100)) (i32.const 1))
    (call $expect (call $load (i32.const 0x80) (i32.const 1) (i32.const 1) (i32.const 0) (i32.const 0x100)) (i32.const 5))
    (call $expect (call $load_by_name (i32.const 0x10) (i32.const 4) (i32.const 0x100)) (i32.const 8))   ;; 5
    (call $expect (call $load_by_name (i32.const 0) (i32.const 7) (i32.const 0x100)) (i32.const 0))
    (call $expect (call $init (i32.load (i32.const 0x100)) (i32.const 0x104)) (i32.const 0))
    (local.set $ctx (i32.load (i32.const 0x104)))
    (call $expect (call $set_input (local.get $ctx) (i32.const 0) (i32.const 0x400)) (i32.const 1))      ;; 8
    (call $expect (call $set_input (local.get $ctx) (i32.const 0) (i32.const 0x420)) (i32.const 0))
    (call $expect (call $compute (local.get $ctx)) (i32.const 0))                                         ;; 10
    (call $expect (call $get_output (local.get $ctx) (i32.const 0) (i32.const 0x800) (i32.const 8) (i32.const 0x108))
      (i32.const 7))
    (call $expect (i32.load (i32.const 0x108)) (i32.const 12))                                            ;; 12
    (call $expect (call $get_output (local.get $ctx) (i32.const 0) (i32.const 0x800) (i32.const 12) (i32.const 0x108))
      (i32.const 0))
    (call $expect (i32.load (i32.const 0x800)) (i32.reinterpret_f32 (f32.const 3.5)))                    ;; 14
    (call $expect (i32.load (i32.const 0x804)) (i32.reinterpret_f32 (f32.const 3.0)))
    (call $expect (i32.load (i32.const 0x808)) (i32.reinterpret_f32 (f32.const 8.0)))                    ;; 16
  )
)
