// mbx-test-args: --forged 200000
// mbx-test-args-wasm-asan: --forged 20000
/*
 * Handles, holds and bad input: stale handles after record reuse, forged
 * handles, the Node-API-style hold contract, capacity, nested drains, and
 * every documented return code of the calls involved.
 */
#include "check.h"

#include <pthread.h>

static int g_runs, g_cancels;
static void count_run(void *arg) {
  (void)arg;
  g_runs++;
}
static void count_cancel(void *arg, int reason) {
  (void)arg;
  CHECK_EQ(reason, MBX_CANCEL_THREAD_EXIT);
  g_cancels++;
}

static mbx_handle attach(void) {
  mbx_handle h;
  CHECK_EQ(mbx_thread_attach(&h), MBX_OK);
  CHECK(mbx_handle_equal(mbx_self(), h));
  return h;
}

static uint32_t index_of(mbx_handle h) { return (uint32_t)h.bits; }

static void test_bad_input(void) {
  mbx_handle h = attach();
  CHECK_EQ(mbx_send(MBX_NULL_HANDLE, count_run, NULL, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_send(h, NULL, count_cancel, NULL), MBX_EINVAL);
  mbx_handle no_gen = {h.bits & 0xffffffffu};
  CHECK_EQ(mbx_send(no_gen, count_run, NULL, NULL), MBX_EINVAL);
  mbx_handle far_index = {(h.bits & ~0xffffffffull) | 0xfffffff0u};
  CHECK_EQ(mbx_send(far_index, count_run, NULL, NULL), MBX_EINVAL);
  mbx_handle future_gen = {h.bits + (5ull << 32)};
  CHECK_EQ(mbx_send(future_gen, count_run, NULL, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_hold(MBX_NULL_HANDLE), MBX_EINVAL);
  CHECK_EQ(mbx_release(h), MBX_EINVAL); /* no mbx_hold outstanding... */
  /* ...except the owner's own, which mbx_release must not take away: */
  CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 1);
  CHECK_EQ(mbx_thread_attach(NULL), MBX_EINVAL); /* already owns one */
  CHECK_EQ(mbx_thread_bind(h), MBX_EINVAL);
  CHECK_EQ(mbx_thread_exit(99), MBX_EINVAL);
  CHECK_EQ(mbx_set_allocator(NULL, (mbx_free_fn)1, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_mailbox_create(NULL), MBX_EINVAL);
  CHECK_EQ(mbx_stats_get(h, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  CHECK_EQ(mbx_poll(), MBX_EPERM);
  CHECK_EQ(mbx_wait(0), MBX_EPERM);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), MBX_EPERM);
  for (int code = 0; code >= -12; code--)
    CHECK(mbx_strerror(code) != NULL && mbx_strerror(code)[0]);
}

static void test_stale_after_reuse(void) {
  mbx_set_quarantine(0);
  mbx_handle old = attach();
  CHECK_EQ(mbx_send(old, count_run, count_cancel, NULL), MBX_OK);
  g_cancels = 0;
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 1);
  CHECK_EQ(g_cancels, 1);
  /* Closed but not yet reused: ECLOSED, and stats still readable. */
  CHECK_EQ(mbx_send(old, count_run, count_cancel, NULL), MBX_ECLOSED);
  mbx_stats st;
  CHECK_EQ(mbx_stats_get(old, &st), MBX_OK);
  CHECK_EQ(st.canceled, 1);
  CHECK_EQ(st.rejected_closed, 1);
  /* The next attach reuses that record with a new generation. */
  mbx_handle fresh = attach();
  CHECK_EQ(index_of(fresh), index_of(old));
  CHECK((fresh.bits >> 32) == (old.bits >> 32) + 1);
  g_runs = 0;
  CHECK_EQ(mbx_send(old, count_run, count_cancel, NULL), MBX_ESTALE);
  CHECK_EQ(mbx_hold(old), MBX_ESTALE);
  CHECK_EQ(mbx_set_capacity(old, 1), MBX_ESTALE);
  CHECK_EQ(mbx_stats_get(old, &st), MBX_ESTALE);
  CHECK_EQ(mbx_poll(), 0);
  CHECK_EQ(g_runs, 0); /* never delivered to the new owner */
  CHECK_EQ(mbx_stats_get(fresh, &st), MBX_OK);
  CHECK_EQ(st.canceled + st.run + st.rejected_closed, 0); /* counters reset */
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  mbx_set_quarantine(64);
}

static void test_holds(void) {
  mbx_set_quarantine(0);
  mbx_handle h = attach();
  CHECK_EQ(mbx_hold(h), MBX_OK);
  CHECK_EQ(mbx_hold(h), MBX_OK);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  CHECK_EQ(mbx_hold(h), MBX_ECLOSED); /* like napi_closing */
  /* Held: no amount of churn reuses it; sends keep saying ECLOSED. */
  for (int i = 0; i < 50; i++) {
    mbx_handle other = attach();
    CHECK(index_of(other) != index_of(h));
    CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  }
  CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_ECLOSED);
  CHECK_EQ(mbx_release(h), MBX_OK);
  CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_ECLOSED);
  CHECK_EQ(mbx_release(h), MBX_OK);     /* last hold: to quarantine */
  CHECK_EQ(mbx_release(h), MBX_EINVAL); /* double release refused */
  /* Quarantine 0 with a queue of retired records: churn until h's record is
   * handed out again, then h is stale. */
  int reused = 0;
  for (int i = 0; i < 200 && !reused; i++) {
    mbx_handle other = attach();
    reused = index_of(other) == index_of(h);
    CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  }
  CHECK(reused);
  CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_ESTALE);
  /* Hold limit. */
  mbx_handle many = attach();
  for (unsigned i = 0; i < MBX_MAX_HOLDS; i++)
    CHECK_EQ(mbx_hold(many), MBX_OK);
  CHECK_EQ(mbx_hold(many), MBX_EAGAIN);
  for (unsigned i = 0; i < MBX_MAX_HOLDS; i++)
    CHECK_EQ(mbx_release(many), MBX_OK);
  CHECK_EQ(mbx_release(many), MBX_EINVAL); /* the owner's is not countable */
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  mbx_set_quarantine(64);
}

static void test_capacity(void) {
  mbx_handle h = attach();
  CHECK_EQ(mbx_set_capacity(h, 3), MBX_OK);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_OK);
  g_runs = 0;
  CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_EFULL);
  CHECK_EQ(g_runs, 0);
  mbx_stats st;
  CHECK_EQ(mbx_stats_get(h, &st), MBX_OK);
  CHECK_EQ(st.rejected_full, 1);
  CHECK_EQ(st.pending, 3);
  CHECK_EQ(st.queue_high_water, 3);
  CHECK_EQ(mbx_poll(), 3);
  CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_set_capacity(h, 0), MBX_OK);
  for (int i = 0; i < 100; i++)
    CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 101);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  CHECK_EQ(mbx_set_capacity(h, 3), MBX_ECLOSED);
}

/* Handlers that re-enter the mailbox. */
static int g_nested_rc, g_self_sends;
static void nested_poll(void *arg) {
  (void)arg;
  g_nested_rc = mbx_poll();
}
static void nested_exit(void *arg) {
  (void)arg;
  g_nested_rc = mbx_thread_exit(MBX_CANCEL_THREAD_EXIT);
}
static void resend_self(void *arg) {
  (void)arg;
  g_self_sends++;
  CHECK_EQ(mbx_send(mbx_self(), resend_self, NULL, NULL), MBX_OK);
}
static int g_order[8], g_order_len;
static void record_order(void *arg) {
  g_order[g_order_len++] = (int)(uintptr_t)arg;
}

static void test_reentrancy(void) {
  mbx_handle h = attach();
  CHECK_EQ(mbx_send(h, nested_poll, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 1);
  CHECK_EQ(g_nested_rc, MBX_EBUSY);
  CHECK_EQ(mbx_send(h, nested_exit, NULL, NULL), MBX_OK);
  CHECK_EQ(mbx_poll(), 1);
  CHECK_EQ(g_nested_rc, MBX_EBUSY);
  /* A handler re-sending to itself cannot make poll spin forever. */
  CHECK_EQ(mbx_send(h, resend_self, NULL, NULL), MBX_OK);
  for (int i = 1; i <= 5; i++) {
    CHECK_EQ(mbx_poll(), 1);
    CHECK_EQ(g_self_sends, i);
  }
  /* Nor mbx_wait: it runs at most 256 (<mbx/mailbox.h>), more than the one
   * pending, so that a drain does not end every few messages. */
  CHECK_EQ(mbx_wait(-1), 256);
  CHECK_EQ(g_self_sends, 5 + 256);
  /* The last re-sent message is canceled at exit: dropped (no cancel fn). */
  mbx_stats before, after;
  mbx_stats_global(&before);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 1);
  mbx_stats_global(&after);
  CHECK_EQ(after.dropped - before.dropped, 1);
  /* FIFO from one sender. */
  attach();
  for (int i = 0; i < 8; i++)
    CHECK_EQ(mbx_send(mbx_self(), record_order, NULL, (void *)(uintptr_t)i),
             MBX_OK);
  CHECK_EQ(mbx_poll(), 8);
  for (int i = 0; i < 8; i++)
    CHECK_EQ(g_order[i], i);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
}

/* Unbound mailboxes: messages wait for the owner; orphan close cancels. */
static int g_abnormal;
static void cancel_abnormal(void *arg, int reason) {
  (void)arg;
  CHECK_EQ(reason, MBX_CANCEL_ABNORMAL_EXIT);
  g_abnormal++;
}
static void *bind_and_poll(void *arg) {
  mbx_handle h = *(mbx_handle *)arg;
  CHECK_EQ(mbx_thread_bind(h), MBX_OK);
  CHECK(mbx_handle_equal(mbx_self(), h));
  int n = mbx_poll();
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  return (void *)(uintptr_t)n;
}

static void test_unbound(void) {
  mbx_handle h;
  CHECK_EQ(mbx_mailbox_create(&h), MBX_OK);
  for (int i = 0; i < 4; i++)
    CHECK_EQ(mbx_send(h, count_run, NULL, NULL), MBX_OK);
  pthread_t t;
  void *ran;
  CHECK_EQ(pthread_create(&t, NULL, bind_and_poll, &h), 0);
  CHECK_EQ(pthread_join(t, &ran), 0);
  CHECK_EQ((int)(uintptr_t)ran, 4);
  CHECK_EQ(mbx_thread_bind(h), MBX_ECLOSED);

  mbx_handle orphan;
  CHECK_EQ(mbx_mailbox_create(&orphan), MBX_OK);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(mbx_send(orphan, count_run, cancel_abnormal, NULL), MBX_OK);
  CHECK_EQ(mbx_mailbox_close_orphan(orphan), 3);
  CHECK_EQ(g_abnormal, 3);
  CHECK_EQ(mbx_mailbox_close_orphan(orphan), MBX_ECLOSED);
  CHECK_EQ(mbx_send(orphan, count_run, cancel_abnormal, NULL), MBX_ECLOSED);
}

/* Garbage handles: every one is refused or, if it happens to name the live
 * mailbox exactly, accepted and then run; nothing else is ever delivered. */
static void test_forged(long count) {
  mbx_handle h = attach();
  rng r;
  rng_seed(&r, 42);
  long accepted = 0;
  g_runs = 0;
  for (long i = 0; i < count; i++) {
    mbx_handle forged = {rng_next(&r)};
    if (i % 4 == 1) /* near-miss: right index, wrong generation */
      forged.bits = (h.bits & 0xffffffffu) | (rng_next(&r) << 32);
    if (i % 4 == 2) /* small index, random generation */
      forged.bits = (rng_next(&r) << 32) | rng_below(&r, 64);
    int rc = mbx_send(forged, count_run, NULL, NULL);
    CHECK(rc == MBX_OK || rc == MBX_EINVAL || rc == MBX_ESTALE ||
          rc == MBX_ECLOSED);
    if (rc == MBX_OK) {
      CHECK(mbx_handle_equal(forged, h));
      accepted++;
    }
  }
  CHECK_EQ(mbx_poll(), accepted);
  CHECK_EQ(g_runs, accepted);
  CHECK_EQ(mbx_thread_exit(MBX_CANCEL_THREAD_EXIT), 0);
  printf("forged=%ld accepted=%ld\n", count, accepted);
}

/* mbx_mailboxes_list: exactly the open mailboxes, closed ones gone. */
static void test_list(void) {
  uint32_t open_count = 99;
  CHECK_EQ(mbx_mailboxes_list(NULL, 0, NULL), MBX_EINVAL);
  CHECK_EQ(mbx_mailboxes_list(NULL, 1, &open_count), MBX_EINVAL);
  CHECK_EQ(mbx_mailboxes_list(NULL, 0, &open_count), MBX_OK);
  uint32_t before = open_count;
  mbx_handle a, b;
  CHECK_EQ(mbx_mailbox_create(&a), MBX_OK);
  CHECK_EQ(mbx_mailbox_create(&b), MBX_OK);
  mbx_handle list[64];
  CHECK_EQ(mbx_mailboxes_list(list, 64, &open_count), MBX_OK);
  CHECK_EQ(open_count, before + 2);
  int seen_a = 0, seen_b = 0;
  for (uint32_t i = 0; i < open_count && i < 64; i++) {
    seen_a += mbx_handle_equal(list[i], a);
    seen_b += mbx_handle_equal(list[i], b);
  }
  CHECK(seen_a == 1 && seen_b == 1);
  CHECK_EQ(mbx_mailboxes_list(list, 1, &open_count), MBX_OK); /* truncated */
  CHECK_EQ(open_count, before + 2);
  CHECK_EQ(mbx_mailbox_close_orphan(a), 0);
  CHECK_EQ(mbx_mailboxes_list(list, 64, &open_count), MBX_OK);
  CHECK_EQ(open_count, before + 1);
  for (uint32_t i = 0; i < open_count; i++)
    CHECK(!mbx_handle_equal(list[i], a));
  CHECK_EQ(mbx_mailbox_close_orphan(b), 0);
}

int main(int argc, char **argv) {
  test_bad_input();
  test_stale_after_reuse();
  test_holds();
  test_capacity();
  test_reentrancy();
  test_unbound();
  test_list();
  test_forged(arg_long(argc, argv, "--forged", 100000));
  mbx_memory_stats m;
  mbx_memory_stats_get(&m);
  CHECK_EQ(m.nodes_live, 0);
  printf("PASS handles records_total=%llu\n",
         (unsigned long long)m.records_total);
  return 0;
}
