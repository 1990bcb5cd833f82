// fdpass: pass open file descriptors between processes over Unix domain
// sockets (SCM_RIGHTS). This file is the public entry point: it only
// re-exports (the constructors are in ./open).
export { listen, connect, bind, socketpair, adopt, adoptServer } from './open'
export type { SocketOptions, ListenOptions, ConnectOptions, BindOptions, AdoptOptions } from './open'
export { MAX_FDS_PER_MESSAGE, runtime } from './constants'
export { FdpassError } from './errors'
export { FdServer, type PeerFilter } from './server'
export { FdSocket } from './socket'
export { ReceivedFd } from './received-fd'
export { notify, notifySocketAddress, formatNotifyState, type NotifyState } from './notify'
export { listenFds, LISTEN_FDS_START, type ListenFd, type ListenFdsOptions } from './systemd'
export { takeFd } from './pidfd'
export type { Address } from './address'
export type { FdLike } from './fd-like'
export type { FdKind } from './received-fd'
export type { FdStat, FileStat } from './native'
export type { Message, PeerCredentials, ReceiveOptions, ReceiveSyncOptions, SocketType } from './socket'
