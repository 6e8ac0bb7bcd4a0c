// The TLS transport bench's baseline peer: dials `tls://HOST:PORT` exactly as the runner does
// (sandbox-runner/tls-dial.ts: the orchestrator's CA, the server name, TLS 1.3) and answers every Call frame with a
// Result carrying the same body, using the runner's framing and nothing else.
import { dialTls } from '../sandbox-runner/tls-dial.js';
import { encodeFrame, FrameDecoder, FrameType } from '../src/protocol/frames.js';

const socket = dialTls(process.argv[2] as string);
const decoder = new FrameDecoder(1 << 30);
socket.on('data', (chunk: Buffer) => {
  for (const frame of decoder.push(chunk)) {
    if (frame.type === FrameType.Call)
      socket.write(encodeFrame(FrameType.Result, frame.id, { fuelConsumed: 0 }, frame.body));
  }
});
socket.on('close', () => process.exit(0));
socket.on('error', () => process.exit(1));
