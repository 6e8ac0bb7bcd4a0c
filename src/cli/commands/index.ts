import type { Command } from '../command.js';
import { callCommand } from './call.js';
import { discoverCommand } from './discover.js';
import { imagesCommand } from './images.js';
import { installCommand, reloadCommand, removeCommand, statusCommand } from './lifecycle.js';
import { serveCommand } from './serve.js';
import { keygenCommand, signCommand, verifyCommand } from './signing.js';
import { validateCommand } from './validate.js';

/** Every `reed-plugins` subcommand, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [
  discoverCommand,
  validateCommand,
  callCommand,
  serveCommand,
  installCommand,
  removeCommand,
  reloadCommand,
  statusCommand,
  imagesCommand,
  keygenCommand,
  signCommand,
  verifyCommand,
];
