// bench/process's reference peer for the host's end of the protocol: raw-echo-child.ts's echo (same framing, same
// Result, nothing else), plus what a runner must say before its first call: a Hello with the plugin id and secret
// it is given, and a Ready when the host sends its Welcome. What the host's RunnerConnection and RunnerLink cost
// against it is their own cost beside the raw echo's client, without our runner's share of the round trip.
import { connect } from 'node:net';
import { encodeFrame, FrameDecoder, FrameType, PROTOCOL_VERSION } from '../src/protocol/frames.js';

const [path, pluginId, secret] = process.argv.slice(2) as [string, string, string];
const socket = connect(path);
socket.setNoDelay(true);
socket.on('connect', () =>
  socket.write(encodeFrame(FrameType.Hello, 0, { protocol: PROTOCOL_VERSION, pluginId, secret })),
);
const decoder = new FrameDecoder(1 << 30);
socket.on('data', (chunk: Buffer) => {
  for (const frame of decoder.push(chunk)) {
    if (frame.type === FrameType.Call)
      socket.write(encodeFrame(FrameType.Result, frame.id, { fuelConsumed: 0 }, frame.body));
    else if (frame.type === FrameType.Welcome)
      socket.write(encodeFrame(FrameType.Ready, 0, { functions: ['echo'] }));
  }
});
socket.on('close', () => process.exit(0));
