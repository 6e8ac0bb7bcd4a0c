;; out: plugin.wasm
;; The example plugin's source. The plugin ABI (host imports, callable exports) comes with the WASM runtime;
;; until then this module only declares its memory.
(module
  (memory (export "memory") 1))
