// Addresses as users write them, and as the binding takes them.
import type { NativeAddress } from './native'
import { invalidArgType, invalidArgValue } from './errors'

/** A socket path, or a name in Linux's abstract namespace. */
export type Address = string | { abstract: string }

export function toNativeAddress(address: unknown, name = 'address'): NativeAddress {
  if (typeof address === 'string') {
    if (address.length === 0) throw invalidArgValue(name, address, 'must not be empty')
    if (address.includes('\0')) throw invalidArgValue(name, address, 'must not contain a NUL byte')
    return { path: address }
  }
  if (address !== null && typeof address === 'object' && typeof (address as { abstract?: unknown }).abstract === 'string') {
    return { abstractName: (address as { abstract: string }).abstract }
  }
  throw invalidArgType(name, 'a socket path string or { abstract: string }', address)
}

/** How an address reads in messages: the path, or `@name`. */
export function formatAddress(a: Address | null): string {
  if (a === null) return '(unnamed)'
  return typeof a === 'string' ? a : `@${a.abstract}`
}
