// Taking a descriptor from another process without a socket (Linux 5.6+).
import { FdpassError, callNative, invalidArgType } from './errors'
import { binding, platform } from './native'
import { ReceivedFd } from './received-fd'

/**
 * A new descriptor for what descriptor `fd` of process `pid` refers to
 * (pidfd_open + pidfd_getfd). The other process need not cooperate in
 * code, but the kernel's ptrace rules apply: same uid and a
 * `kernel.yama.ptrace_scope` that allows it, or CAP_SYS_PTRACE; otherwise
 * EPERM says so. ERR_FDPASS_UNSUPPORTED on macOS and kernels before 5.6.
 * Prefer SCM_RIGHTS when the other process can send: it needs no ptrace
 * rights, works on macOS, and carries data and many fds per message.
 */
export function takeFd(pid: number, fd: number): ReceivedFd {
  if (!Number.isInteger(pid) || pid <= 0) throw invalidArgType('pid', 'a positive integer', pid)
  if (!Number.isInteger(fd) || fd < 0) throw invalidArgType('fd', 'a non-negative integer', fd)
  if (!platform.supportsPidfd) {
    throw new FdpassError('ERR_FDPASS_UNSUPPORTED', `pidfd_getfd is not supported on ${process.platform} here (Linux 5.6 or later)`)
  }
  return new ReceivedFd(
    callNative(() => binding.takeFd(pid, fd)),
    true,
    `takeFd(${pid}, ${fd})`,
  )
}
