// The process-mode baseline's peer: connects to a Unix socket and answers every Call frame with a Result
// carrying the same body, using the same framing as the sandbox-runner and nothing else.
import { connect } from 'node:net';
import { encodeFrame, FrameDecoder, FrameType } from '../src/protocol/frames.js';

const socket = connect(process.argv[2] as string);
socket.setNoDelay(true);
const decoder = new FrameDecoder(1 << 30);
socket.on('data', (chunk: Buffer) => {
  for (const frame of decoder.push(chunk)) {
    if (frame.type === FrameType.Call)
      socket.write(encodeFrame(FrameType.Result, frame.id, { fuelConsumed: 0 }, frame.body));
  }
});
socket.on('close', () => process.exit(0));
