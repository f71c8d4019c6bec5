;; WASI-NN script guest for tests: a WASI command that runs a list of wasi_ephemeral_nn calls read from stdin, so a
;; test can drive the host through `edgewasm run` / `Guest.run` (the production path: CLI, sandbox, deadline).
;;
;; stdin is copied verbatim to guest address BASE = 0x10000 (memory grows to fit). The u32 at BASE is the address of
;; the call table: n, then n entries of six u32s (function id, five arguments), then out_ptr, out_len. Every address
;; in the script is absolute (BASE + offset into stdin). Function ids: 0 load, 1 load_by_name,
;; 2 load_by_name_with_config, 3 init_execution_context, 4 set_input, 5 compute, 6 get_output, 7 unload,
;; 8 finalize_execution_context, 9 memory.grow(a0). Every call runs, whatever the previous ones returned.
;; stdout: the n results (u32 each), then the bytes [out_ptr, out_ptr + out_len) of guest memory.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load_by_name_with_config"
    (func $load_by_name_with_config (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "init_execution_context" (func $init (param i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "set_input" (func $set_input (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output" (func $get_output (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "unload" (func $unload (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "finalize_execution_context" (func $finalize (param i32) (result i32)))
  (memory (export "memory") 2)

  ;; stdin -> BASE; returns its length. Scratch: iovec at 0, nread at 8.
  (func $read_stdin (result i32) (local $pos i32) (local $n i32)
    (local.set $pos (i32.const 0x10000))
    (block $done
      (loop $more
        (if (i32.gt_u (i32.add (local.get $pos) (i32.const 0x10000))
                      (i32.shl (memory.size) (i32.const 16)))
          (then (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))))
        (i32.store (i32.const 0) (local.get $pos))
        (i32.store (i32.const 4) (i32.const 0x10000))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $pos (i32.add (local.get $pos) (local.get $n)))
        (br $more)))
    (i32.sub (local.get $pos) (i32.const 0x10000)))

  (func $dispatch (param $f i32) (param $a i32) (param $b i32) (param $c i32) (param $d i32) (param $e i32)
    (result i32)
    (block $grow (block $fin (block $unl (block $out (block $comp (block $set (block $init (block $cfg
    (block $name (block $ld (block $bad
      (br_table $ld $name $cfg $init $set $comp $out $unl $fin $grow $bad (local.get $f)))
      (return (i32.const 0xFFFF)))  ;; an unknown function id
      (return (call $load (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e))))
      (return (call $load_by_name (local.get $a) (local.get $b) (local.get $c))))
      (return (call $load_by_name_with_config (local.get $a) (local.get $b) (local.get $c) (local.get $d)
                                              (local.get $e))))
      (return (call $init (local.get $a) (local.get $b))))
      (return (call $set_input (local.get $a) (local.get $b) (local.get $c))))
      (return (call $compute (local.get $a))))
      (return (call $get_output (local.get $a) (local.get $b) (local.get $c) (local.get $d) (local.get $e))))
      (return (call $unload (local.get $a))))
      (return (call $finalize (local.get $a))))
    (memory.grow (local.get $a)))

  (func (export "_start") (local $t i32) (local $n i32) (local $i i32) (local $entry i32)
                          (local $out_ptr i32) (local $out_len i32)
    (drop (call $read_stdin))
    (local.set $t (i32.load (i32.const 0x10000)))
    (local.set $n (i32.load (local.get $t)))
    (local.set $out_ptr (i32.load (i32.add (local.get $t) (i32.add (i32.const 4) (i32.mul (local.get $n) (i32.const 24))))))
    (local.set $out_len (i32.load (i32.add (local.get $t) (i32.add (i32.const 8) (i32.mul (local.get $n) (i32.const 24))))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $entry (i32.add (local.get $t) (i32.add (i32.const 4) (i32.mul (local.get $i) (i32.const 24)))))
        ;; result i goes to t+4+4i: it overwrites only entries already run
        (i32.store (i32.add (local.get $t) (i32.add (i32.const 4) (i32.shl (local.get $i) (i32.const 2))))
          (call $dispatch
            (i32.load (local.get $entry)) (i32.load offset=4 (local.get $entry)) (i32.load offset=8 (local.get $entry))
            (i32.load offset=12 (local.get $entry)) (i32.load offset=16 (local.get $entry))
            (i32.load offset=20 (local.get $entry))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    ;; stdout: results, then the output region
    (call $write_all (i32.add (local.get $t) (i32.const 4)) (i32.shl (local.get $n) (i32.const 2)))
    (call $write_all (local.get $out_ptr) (local.get $out_len)))

  ;; write [ptr, ptr+len) to stdout; fd_write may take less than asked (iovec at 16, nwritten at 24)
  (func $write_all (param $ptr i32) (param $len i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 16) (local.get $ptr))
        (i32.store (i32.const 20) (local.get $len))
        (if (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)) (then unreachable))
        (if (i32.eqz (i32.load (i32.const 24))) (then unreachable))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 24))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 24))))
        (br $more))))
)
