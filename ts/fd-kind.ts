// The kinds of file a descriptor can refer to, as fstat tells them apart.

/** What a descriptor refers to, as fstat sees it. */
export type FdKind = 'file' | 'directory' | 'pipe' | 'socket' | 'character-device' | 'block-device' | 'symlink' | 'unknown'

/** Every FdKind, in the order of crates/fdpass-core FdKind: the binding returns the index. */
export const FD_KINDS: readonly FdKind[] = ['file', 'directory', 'pipe', 'socket', 'character-device', 'block-device', 'symlink', 'unknown']
