/*
 * A mailbox's start: creating it (mbx_mailbox_create) and binding it to the
 * calling thread (mbx_thread_bind, mbx_thread_attach). Its end is
 * core/lifecycle.c (through core/closing.c).
 */
#include "record.h"

int mbx_mailbox_create(mbx_handle *out) {
  if (!out)
    return MBX_EINVAL;
  mbx__record *r;
  uint32_t gen;
  int rc = mbx__record_open(&r, &gen);
  if (rc != MBX_OK)
    return rc;
  *out = mbx__make_handle(r->index, gen);
  return MBX_OK;
}

int mbx_thread_bind(mbx_handle h) {
  mbx__record *r;
  if (mbx__self.record)
    return MBX_EINVAL;
  int rc = mbx__lookup(h, &r);
  if (rc != MBX_OK)
    return rc;
  // Acquire: we will read the queue the creator initialised.
  uint64_t gate = atomic_load_explicit(&r->gate, memory_order_acquire);
  rc = mbx__gate_refusal(gate, mbx__handle_gen(h));
  if (rc != MBX_OK)
    return rc;
  uint16_t unbound = 0;
  // Acquire: see the gate load above. Relaxed on failure: we only report.
  if (!atomic_compare_exchange_strong_explicit(
          &r->bound, &unbound, 1, memory_order_acquire, memory_order_relaxed))
    return MBX_EINVAL;
  mbx__self.record = r;
  mbx__self.handle = h;
  return MBX_OK;
}

int mbx_thread_attach(mbx_handle *out) {
  if (mbx__self.record)
    return MBX_EINVAL;
  mbx_handle h;
  int rc = mbx_mailbox_create(&h);
  if (rc != MBX_OK)
    return rc;
  rc = mbx_thread_bind(h);
  if (rc != MBX_OK) { /* cannot happen: fresh, open, unbound */
    mbx_mailbox_close_orphan(h);
    return rc;
  }
  if (out)
    *out = h;
  return MBX_OK;
}
