// The text of `flotilla start --help`, printed from the settings table; apart from start.ts so
// that printing it loads nothing else (start.ts pulls in the runtime, LMDB and the transport).
import { startHelp } from './settings.js';

export const START_HELP = startHelp();
