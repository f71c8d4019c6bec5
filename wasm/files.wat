;; files: a WASI command guest that shows what the sandbox lets it see (tests of --dir and --env).
;; It prints its environment (NUL-separated), then the contents of hello.txt in its first preopened directory,
;; then tries to create written.txt there. Exit codes: 0 all done, 2 cannot open hello.txt, 3 cannot write.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 300) "hello.txt")
  (data (i32.const 320) "written.txt")
  (data (i32.const 340) "ok\n")

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    ;; environment: sizes at 100/104, pointers at 1024, strings at 4096
    (drop (call $environ_sizes_get (i32.const 100) (i32.const 104)))
    (drop (call $environ_get (i32.const 1024) (i32.const 4096)))
    (call $write (i32.const 4096) (i32.load (i32.const 104)))
    ;; hello.txt, read-only, from the first preopen (fd 3)
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 300) (i32.const 9) (i32.const 0)
                         (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 108))
      (then (call $proc_exit (i32.const 2))))
    (i32.store (i32.const 16) (i32.const 8192))
    (i32.store (i32.const 20) (i32.const 1024))
    (drop (call $fd_read (i32.load (i32.const 108)) (i32.const 16) (i32.const 1) (i32.const 24)))
    (call $write (i32.const 8192) (i32.load (i32.const 24)))
    ;; written.txt: create + truncate, write rights
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 320) (i32.const 11) (i32.const 9)
                         (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 112))
      (then (call $proc_exit (i32.const 3))))
    (call $write (i32.const 340) (i32.const 3))))
