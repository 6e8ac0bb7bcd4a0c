;; out: plugin.wasm
;; The example WAT plugin (ABI: docs/ABI-wasm.md). Callable functions are exports of type () -> i32:
;; 0 means success, anything else an error (with a code set through reed.error_set).
(module
  (import "reed" "input_len" (func $input_len (result i32)))
  (import "reed" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "reed" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "reed" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  ;; 0..63: constant strings; 1024..: input buffer (up to 64 KiB)
  (data (i32.const 0) "Hello, ")
  (data (i32.const 8) "!")
  (data (i32.const 16) "greeting")
  (data (i32.const 32) "hello plugin ready")

  ;; Logs once when the host loads the plugin.
  (func (export "init") (result i32)
    (call $log (i32.const 1) (i32.const 32) (i32.const 18))
    (i32.const 0))

  ;; Writes the input back unchanged.
  (func (export "echo") (result i32)
    (local $n i32)
    (local.set $n (call $input_read (i32.const 1024) (i32.const 65536) (i32.const 0)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0))

  ;; "Hello, <input>!"
  (func (export "greet") (result i32)
    (local $n i32)
    (local.set $n (call $input_read (i32.const 1024) (i32.const 65536) (i32.const 0)))
    (drop (call $output_write (i32.const 0) (i32.const 7)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (drop (call $output_write (i32.const 8) (i32.const 1)))
    (i32.const 0))

  ;; The plugin's [configuration] greeting, as JSON.
  (func (export "greeting") (result i32)
    (local $n i32)
    (local.set $n (call $config_get (i32.const 16) (i32.const 8) (i32.const 1024) (i32.const 65536)))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0))

  ;; Sums 1..n for the input's length n, in a loop: fuel grows with the input.
  (func (export "count") (result i32)
    (local $i i32) (local $sum i32)
    (local.set $i (call $input_len))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $i)))
        (local.set $sum (i32.add (local.get $sum) (local.get $i)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Never returns: only fuel ends it.
  (func (export "spin") (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
