// replaceFile: the small JSON files of a data dir (cluster.json, groups.json, nodes.json) are
// replaced whole: written aside, then renamed over the old one, so a process killed at any point
// leaves the old file or the new one, never a truncated one. A truncated cluster.json (it is
// rewritten at every start) or groups.json would keep the node from ever starting again: a kill
// between the truncation and the write of a plain writeFileSync was enough. No fsync: these files follow what the log stores already hold durably, and a kill -9
// leaves the page cache to the kernel; a power loss may lose the last replacement, not the file.
import { renameSync, writeFileSync } from 'node:fs';

export function replaceFile(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
