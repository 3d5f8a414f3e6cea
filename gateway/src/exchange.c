/* exchange — buffers, the exchange's life (allocation, reuse, suspension), back-off; see
 * exchange.h. */
#define _GNU_SOURCE
#include "exchange.h"
#include "voter/xalloc.h"

const char *const fast_result_names[FAST_RESULTS] = {"answered", "timeout", "yielded",
                                                     "streamed", "retried", "skipped"};
const char *const idle_result_names[IDLE_RESULTS] = {"event", "empty", "skipped"};

atomic_bool ex_draining;
atomic_bool ex_stopping;

/* Exchanges are recycled per loop with their small request and header buffers, which
 * saves several allocations per request. */
#define SPARE_MAX 128
#define SPARE_BUF 4096

exchange *ex_new(loop *w) {
  exchange *ex = w->spare;
  if (!ex) {
    ex = xcalloc(1, sizeof *ex);
    return ex;
  }
  w->spare = ex->active_next;
  w->nspare--;
  buf req = ex->req;
  char *hbuf = ex->hbuf;
  size_t hcap = ex->hcap;
  memset(ex, 0, sizeof *ex);
  ex->req.data = req.data;
  ex->req.cap = req.cap;
  ex->hbuf = hbuf;
  ex->hcap = hcap;
  return ex;
}

bool backoff_skipping(backoff *b) {
  if (!b->skip) return false;
  b->skip--;
  return true;
}

void backoff_miss(backoff *b) {
  b->skip = b->next;
  b->next = b->next < 512 ? b->next * 2 + 1 : 1023;
}

void backoff_hit(backoff *b) { b->next = 0; }

double ex_now_s(void) { return util_monotonic(); }

/* ------------------------------------------------------------------ buffers */

void buf_init(buf *b, size_t cap) {
  b->data = xmalloc(cap);
  b->off = b->len = 0;
  b->cap = cap;
}

size_t buf_pending(const buf *b) { return b->len - b->off; }

/* appends n bytes, growing the buffer as needed */
void buf_append(buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = (b->len + n) * 2;
    char *nb = xrealloc(b->data, cap);
    b->data = nb;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
}

/* Makes room for n more bytes at the end, discarding consumed ones if needed; false when
 * the buffer cannot take them. keep: consumed bytes must stay (replay). */
bool buf_room(buf *b, size_t n, bool *keep) {
  if (b->len + n <= b->cap) return true;
  if (b->off == 0 || b->len - b->off + n > b->cap) return false;
  if (keep) *keep = false;
  memmove(b->data, b->data + b->off, b->len - b->off);
  b->len -= b->off;
  b->off = 0;
  return true;
}

/* ------------------------------------------------------------------ small helpers */

void ex_ws_set(loop *w, int fd, uint32_t events, void *ptr, int op) {
  struct epoll_event ev = {.events = events, .data.ptr = ptr};
  if (epoll_ctl(w->epfd, op, fd, &ev) != 0 && op != EPOLL_CTL_DEL)
    log_error("epoll_ctl(%d) failed: %s", op, strerror(errno));
}

/* ------------------------------------------------------------------ exchange bookkeeping */

void ex_active_add(exchange *ex) {
  if (ex->in_active) return;
  loop *w = ex->w;
  ex->in_active = true;
  ex->active_prev = NULL;
  ex->active_next = w->active;
  if (w->active) w->active->active_prev = ex;
  w->active = ex;
}

void ex_active_del(exchange *ex) {
  if (!ex->in_active) return;
  loop *w = ex->w;
  if (ex->active_prev) ex->active_prev->active_next = ex->active_next;
  else w->active = ex->active_next;
  if (ex->active_next) ex->active_next->active_prev = ex->active_prev;
  ex->in_active = false;
}

void ex_unref(exchange *ex) {
  if (--ex->refs > 0) return;
  if (ex->uri != ex->uri_buf) free(ex->uri);
  free(ex->lbody);
  free(ex->resp.data);
  loop *w = ex->w;
  if (w->nspare < SPARE_MAX && !atomic_load(&ex_stopping)) {
    if (ex->req.cap > SPARE_BUF) {
      free(ex->req.data);
      ex->req.data = NULL;
      ex->req.cap = 0;
    }
    if (ex->hcap > SPARE_BUF) {
      free(ex->hbuf);
      ex->hbuf = NULL;
      ex->hcap = 0;
    }
    ex->active_next = w->spare;
    w->spare = ex;
    w->nspare++;
    return;
  }
  free(ex->req.data);
  free(ex->hbuf);
  free(ex);
}

void ex_spare_free(loop *w) {
  while (w->spare) {
    exchange *ex = w->spare;
    w->spare = ex->active_next;
    free(ex->req.data);
    free(ex->hbuf);
    free(ex);
  }
  w->nspare = 0;
}

void ex_suspend(exchange *ex) {
  if (ex->suspended) return;
  MHD_suspend_connection(ex->conn);
  ex->suspended = true;
}

void ex_resume(exchange *ex) {
  if (!ex->suspended) return;
  ex->suspended = false;
  MHD_resume_connection(ex->conn);
  ex->w->need_run = true;
}

/* Adds to a counter only its loop writes (the metrics renderer reads it). */
void ex_own_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}
