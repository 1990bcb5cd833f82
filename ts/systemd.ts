// systemd socket activation (sd_listen_fds_with_names(3)): the listening
// sockets a service manager opened for this process, as fds 3, 4, ...
import { FdpassError } from './errors'
import { binding } from './native'

/** The first inherited descriptor (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3

export interface ListenFd {
  fd: number
  /** From LISTEN_FDNAMES (FileDescriptorName=), or 'unknown'. */
  name: string
}

export interface ListenFdsOptions {
  /** Remove LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES afterwards, so children don't see them. @default true */
  unsetEnvironment?: boolean
  env?: NodeJS.ProcessEnv
}

/**
 * The sockets passed by socket activation, with their names, each made
 * close-on-exec. Empty when this process was not socket-activated (or the
 * variables are meant for another pid). Plug them into servers:
 * `net.createServer().listen({ fd })`, `dgram.createSocket('udp4').bind({ fd })`,
 * `adoptServer(fd)` for an fdpass Unix listener, or `{ systemd: name }`
 * listeners in fdpass/handoff.
 */
export function listenFds(options: ListenFdsOptions = {}): ListenFd[] {
  const env = options.env ?? process.env
  const unset = options.unsetEnvironment ?? true
  const pid = env.LISTEN_PID
  const count = env.LISTEN_FDS
  const names = env.LISTEN_FDNAMES
  if (unset) {
    delete env.LISTEN_PID
    delete env.LISTEN_FDS
    delete env.LISTEN_FDNAMES
  }
  if (pid === undefined || count === undefined) return []
  if (Number(pid) !== process.pid) return []
  const n = Number(count)
  if (!Number.isInteger(n) || n < 0) throw new FdpassError('ERR_INVALID_ARG_VALUE', `LISTEN_FDS is not a count: '${count}'`)
  const nameList = names ? names.split(':') : []
  const fds: ListenFd[] = []
  for (let i = 0; i < n; i++) {
    const fd = LISTEN_FDS_START + i
    binding.setCloexec(fd)
    fds.push({ fd, name: nameList[i] || 'unknown' })
  }
  return fds
}
