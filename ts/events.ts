// EventEmitter with the events of each class typed: listener names are
// checked and listeners get their arguments' types. Only the types differ
// from node:events; at run time it is EventEmitter itself.
import { EventEmitter } from 'node:events'

/** The events every EventEmitter has. */
export interface EmitterEvents {
  newListener: [event: string | symbol, listener: (...args: any[]) => void]
  removeListener: [event: string | symbol, listener: (...args: any[]) => void]
}

/** Listener arguments by event name. */
export type EventMap<Map> = { [E in keyof Map]: unknown[] }

type Events<Map> = Map & EmitterEvents

/** The event names of an emitter of `Map`'s events. */
export type EventName<Map> = keyof Events<Map>

/** A listener of event `E`. */
export type Listener<Map extends EventMap<Map>, E extends EventName<Map>> = (...args: Events<Map>[E]) => void

/** The listener methods of an emitter of `Map`'s events (event name → listener arguments). */
export interface TypedListeners<Map extends EventMap<Map>> {
  on<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
  addListener<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
  once<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
  prependListener<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
  prependOnceListener<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
  off<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
  removeListener<E extends EventName<Map>>(event: E, listener: Listener<Map, E>): this
}

type ListenerMethod = keyof TypedListeners<{}>

/**
 * EventEmitter, typed by `Map`. (Not @types/node's `EventEmitter<T>`,
 * which older @types/node versions that users may have do not know.)
 */
export type Emitter<Map extends EventMap<Map>> = Omit<EventEmitter, ListenerMethod> & TypedListeners<Map>

export const Emitter = EventEmitter as unknown as new <Map extends EventMap<Map>>(options?: ConstructorParameters<typeof EventEmitter>[0]) => Emitter<Map>
