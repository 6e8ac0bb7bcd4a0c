import wabtFactory from 'wabt';

/** wabt's WAT compiler, with bulk memory and reference types on: `await watCompiler()` once, then call it. */
export async function watCompiler(): Promise<(text: string) => Uint8Array> {
  const wabt = await wabtFactory();
  return (text) => {
    const m = wabt.parseWat('t.wat', text, { bulk_memory: true, reference_types: true });
    try {
      return m.toBinary({}).buffer;
    } finally {
      m.destroy();
    }
  };
}
