/**
 * What one stored entry costs on disk, for storage quotas (issue 10, class 15). Counting key and value bytes
 * let LMDB grow to 9x a plugin's quota: every entry also takes a node header and a pointer in a leaf page, leaves
 * split in halves (so a page may be half empty), and a value too large for a leaf takes whole overflow pages. The
 * cost below is an upper estimate of that, so the quota holds for the file on disk; MemoryStorage and LmdbStorage
 * both charge it, so a plugin sees the same quota whatever storage the host uses.
 *
 * The constants are LMDB's (mdb.c): PAGEHDRSZ 16, NODESZ 8, a 2-byte pointer per node (indx_t), a leaf node at
 * most `((pageSize - PAGEHDRSZ) / 2 & ~1) - 2` bytes, and an overflow value's page number (8 bytes) in its node.
 */
export const DEFAULT_STORAGE_PAGE_BYTES = 4096;
const PAGE_HEADER = 16;
const NODE_HEADER = 8;
const NODE_POINTER = 2;
const PAGE_NUMBER = 8;
/** `<plugin id> NUL` before every key (the namespace), and a byte of slack for the key encoding. */
const KEY_FRAMING = 2;

/**
 * The on-disk cost of storing `valueBytes` under `key` in `pluginId`'s namespace: nodes in leaves count twice
 * (a leaf after a split is half full), values too large for a leaf count whole pages.
 */
export function storageEntryCost(
  pluginId: string,
  key: string,
  valueBytes: number,
  pageBytes: number = DEFAULT_STORAGE_PAGE_BYTES,
): number {
  const keyBytes = Buffer.byteLength(pluginId) + Buffer.byteLength(key) + KEY_FRAMING;
  const nodeMax = (((pageBytes - PAGE_HEADER) / 2) & ~1) - NODE_POINTER;
  const inline = NODE_HEADER + keyBytes + valueBytes;
  if (inline <= nodeMax) return 2 * (inline + NODE_POINTER);
  const overflowPages = Math.ceil((PAGE_HEADER + valueBytes) / pageBytes);
  return overflowPages * pageBytes + 2 * (NODE_HEADER + keyBytes + PAGE_NUMBER + NODE_POINTER);
}
