import { describe, expect, it } from 'vitest';
import { parseListen } from '../../src/server/tls-listener.js';

describe('serve --listen HOST:PORT', () => {
  it.each([
    ['127.0.0.1:8443', { host: '127.0.0.1', port: 8443 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['localhost:443', { host: 'localhost', port: 443 }],
    ['[::1]:8443', { host: '::1', port: 8443 }],
    ['[::]:65535', { host: '::', port: 65535 }],
  ])('reads %s', (text, expected) => {
    expect(parseListen(text)).toEqual(expected);
  });

  it.each([
    '8443',
    '127.0.0.1',
    '127.0.0.1:65536',
    '::1:8443',
    '[nothost]:1',
    'a:b',
    ':80',
    '[::1]',
    'host:-1',
  ])('refuses %s with usage', (text) => {
    expect(() => parseListen(text)).toThrow(expect.objectContaining({ code: 'usage' }));
  });
});
