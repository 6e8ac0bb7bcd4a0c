import { Packr } from 'msgpackr';
import { encodeFrame, FrameDecoder, FrameType } from '../src/protocol/frames.js';
import { fmt, median, printTable } from './report.js';

/**
 * Why the protocol's frames are a binary header, JSON metadata and a raw body (docs/PROTOCOL.md): encode and
 * decode a call frame with each candidate, for a 64-byte and a 64-KiB body.
 */
function perOp(fn: () => void, n = 50_000): number {
  for (let i = 0; i < n / 10; i++) fn();
  const runs: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    runs.push(((performance.now() - t) * 1000) / n);
  }
  return median(runs);
}

export function runEncodingBench(): boolean {
  const packr = new Packr({ useRecords: false });
  const rows = [];
  for (const size of [64, 65_536]) {
    const body = new Uint8Array(size).fill(7);
    const decoder = new FrameDecoder(1 << 30);
    const ours = perOp(
      () => {
        decoder.push(encodeFrame(FrameType.Call, 1, { fn: 'echo' }, body));
      },
      size > 1000 ? 5_000 : 50_000,
    );
    const json = perOp(
      () => {
        const text = JSON.stringify({
          type: 4,
          id: 1,
          fn: 'echo',
          body: Buffer.from(body).toString('base64'),
        });
        const back = JSON.parse(text) as { body: string };
        Buffer.from(back.body, 'base64');
      },
      size > 1000 ? 5_000 : 50_000,
    );
    const msgpack = perOp(
      () => {
        packr.unpack(packr.pack({ type: 4, id: 1, fn: 'echo', body }));
      },
      size > 1000 ? 5_000 : 50_000,
    );
    rows.push(
      {
        figure: `${fmt(size)} B body: header + JSON meta + raw body (chosen)`,
        value: `${fmt(ours, 2)} us`,
        baseline: `${fmt(json, 2)} us JSON+base64`,
        ratio: `${fmt(ours / json, 2)}x`,
        target: '',
      },
      {
        figure: `${fmt(size)} B body: msgpack`,
        value: `${fmt(msgpack, 2)} us`,
        baseline: `${fmt(json, 2)} us JSON+base64`,
        ratio: `${fmt(msgpack / json, 2)}x`,
        target: '',
      },
    );
  }
  printTable('protocol encoding: encode + decode one call frame', rows);
  return true;
}
