import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/** A new temp file only: never a symlink or FIFO planted at its name (Windows has no O_NOFOLLOW). */
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

/**
 * Write-then-rename in the same folder: a reader (or a crash) sees old or new, never half, and a
 * symlink or FIFO planted at `file` is replaced, never followed or opened. Fsynced first unless
 * `durable: false` (a control request, a live file: worth nothing after a crash).
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  { durable = true }: { durable?: boolean } = {},
): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, CREATE_FLAGS, 0o600);
  try {
    await handle.writeFile(data);
    if (durable) await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}
