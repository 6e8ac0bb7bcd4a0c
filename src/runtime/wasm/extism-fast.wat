;; Extism's loads and stores over an Extism plugin's arena (extism-arena.ts), in WebAssembly: the plugin calls
;; them without leaving WebAssembly (no BigInt made per 64-bit argument, no JavaScript frame, no guard wrapper).
;; Ours, written from Extism's documented ABI. Assembled with wabt (wat2wasm, bulk memory) into extism-fast.ts;
;; test/unit/extism-fast.test.ts checks that those bytes are this text's, and what they do.
;;
;; They answer as the JavaScript ones did and as Extism's kernel does: inside the arena's extent, [8, memory.size
;; * 64 KiB), a load or store works; outside it (0 to 7, wild, negative, straddling its end) a load answers 0 and
;; a store does nothing. Each charges FUEL_PER_HOST_CALL (256: ~16 ns of CPU in a loop) plus 1 per byte, owed
;; here and paid through the runtime ($pay: ExtismIo.enter) when 10,000 (SETTLE_FUEL) are owed, and by take_debt
;; whenever the runtime settles; $pay checks the fuel and the deadline and ends the run, uncatchably, on either.
;; A store past every byte stored since the last reset also owes the bytes up to its end, before it is made: the
;; reset zeroes them (a plugin that grew the arena once must not make every later call zero all of it for one
;; byte's fuel).
(module
  (import "arena" "memory" (memory 1))
  (import "arena" "pay" (func $pay (param i32)))
  ;; Fuel owed.
  (global $debt (mut i32) (i32.const 0))
  ;; Nothing was stored here at or past this offset since the last reset (the runtime knows its own writes).
  (global $clean (mut i32) (i32.const 8))

  (func $charge (param $fuel i32)
    (global.set $debt (i32.add (global.get $debt) (local.get $fuel)))
    (if (i32.ge_u (global.get $debt) (i32.const 10000))
      (then
        (local.set $fuel (global.get $debt))
        (global.set $debt (i32.const 0))
        (call $pay (local.get $fuel)))))

  ;; Whether [p, p+n) lies inside [8, extent), unsigned (a negative p is huge). The extent is below 2^32.
  (func $inside (param $p i64) (param $n i64) (result i32)
    (i32.and
      (i64.ge_u (local.get $p) (i64.const 8))
      (i64.le_u (local.get $p)
        (i64.sub (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)) (local.get $n)))))

  ;; A store about to reach `end`: the bytes past $clean up to it are owed (the extent is below 2^32).
  (func $reach (param $end i32)
    (if (i32.gt_u (local.get $end) (global.get $clean))
      (then
        (call $charge (i32.sub (local.get $end) (global.get $clean)))
        (global.set $clean (local.get $end)))))

  ;; The fuel owed, now paid by the runtime.
  (func (export "take_debt") (result i32) (local $owed i32)
    (local.set $owed (global.get $debt))
    (global.set $debt (i32.const 0))
    (local.get $owed))

  ;; Zeroes every byte written since the last reset: stored here, or below $high by the runtime.
  (func (export "reset") (param $high i32) (local $end i32)
    (local.set $end (select (local.get $high) (global.get $clean)
      (i32.gt_u (local.get $high) (global.get $clean))))
    (if (i32.gt_u (local.get $end) (i32.const 8))
      (then (memory.fill (i32.const 8) (i32.const 0) (i32.sub (local.get $end) (i32.const 8)))))
    (global.set $clean (i32.const 8)))

  (func (export "load_u8") (param $p i64) (result i32)
    (call $charge (i32.const 257))
    (if (result i32) (call $inside (local.get $p) (i64.const 1))
      (then (i32.load8_u (i32.wrap_i64 (local.get $p))))
      (else (i32.const 0))))

  (func (export "load_u64") (param $p i64) (result i64)
    (call $charge (i32.const 264))
    (if (result i64) (call $inside (local.get $p) (i64.const 8))
      (then (i64.load align=1 (i32.wrap_i64 (local.get $p))))
      (else (i64.const 0))))

  (func (export "store_u8") (param $p i64) (param $value i32)
    (call $charge (i32.const 257))
    (if (call $inside (local.get $p) (i64.const 1))
      (then
        (call $reach (i32.add (i32.wrap_i64 (local.get $p)) (i32.const 1)))
        (i32.store8 (i32.wrap_i64 (local.get $p)) (local.get $value)))))

  (func (export "store_u64") (param $p i64) (param $value i64)
    (call $charge (i32.const 264))
    (if (call $inside (local.get $p) (i64.const 8))
      (then
        (call $reach (i32.add (i32.wrap_i64 (local.get $p)) (i32.const 8)))
        (i64.store align=1 (i32.wrap_i64 (local.get $p)) (local.get $value))))))
