;; cat: a WASI command guest (_start): copies stdin to stdout; exits 3 when stdin is empty.
;; It is what `edgewasm run` does for command modules: request on stdin, response on stdout, exit code.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; iovec at 0: {buf = 1024, len = 65536 - 1024}; counts at 16
  (func (export "_start")
    (local $n i32) (local $total i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (block $done
      (loop $again
        (i32.store (i32.const 4) (i32.const 64512))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
        (br $again)))
    (if (i32.eqz (local.get $total)) (then (call $proc_exit (i32.const 3))))))
