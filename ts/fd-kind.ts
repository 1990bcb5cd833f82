// The kinds of file a descriptor can refer to, as fstat tells them apart.
// The names themselves come from the addon (native.ts FD_KINDS).

/** What a descriptor refers to, as fstat sees it. */
export type FdKind = 'file' | 'directory' | 'pipe' | 'socket' | 'character-device' | 'block-device' | 'symlink' | 'unknown'
