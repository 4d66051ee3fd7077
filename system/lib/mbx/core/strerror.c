/* mbx_strerror: the message of each return code. */
#include <mbx/mailbox.h>

const char *mbx_strerror(int code) {
  switch (code) {
  case MBX_OK:
    return "ok";
  case MBX_ECLOSED:
    return "mailbox closed: target thread is exiting or has exited";
  case MBX_ESTALE:
    return "stale handle: target thread exited and its record was reused";
  case MBX_EINVAL:
    return "invalid argument or handle";
  case MBX_ENOMEM:
    return "out of memory";
  case MBX_EFULL:
    return "mailbox full";
  case MBX_EBUSY:
    return "already draining on this thread";
  case MBX_ETIMEDOUT:
    return "timed out";
  case MBX_EPERM:
    return "calling thread does not own a mailbox";
  case MBX_EAGAIN:
    return "too many holds";
  case MBX_ECANCELED:
    return "canceled: target thread exited before the work completed";
  case MBX_EDEADLK:
    return "would wait for the calling thread itself";
  case MBX_EWOULDBLOCK:
    return "the calling thread must not block";
  default:
    return "unknown error";
  }
}
