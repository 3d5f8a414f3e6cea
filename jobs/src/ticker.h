/* ticker — a thread that runs a round of work now and then every period, or at once when
 * kicked, until stopped (prefix ticker_): the one loop behind the sweeper and the webhook
 * sender. A kick during a round makes the next one start right after it. */
#ifndef JOBS_TICKER_H
#define JOBS_TICKER_H

typedef struct ticker ticker;

/* Starts the thread; NULL when it cannot start. */
ticker *ticker_start(void (*round)(void *arg), void *arg, long period_ms);
/* Wakes the thread for a round now (NULL: nothing). */
void ticker_kick(ticker *t);
/* Lets the running round finish, joins the thread, frees (NULL: nothing). */
void ticker_stop(ticker *t);

#endif
