/* ratelimit: at most `burst` log lines per `interval`, per object (one per
 * VF, so one noisy guest cannot drown the others' lines or the host's).
 *
 * Contract
 * - am_ratelimit_init: burst > 0 and interval_ns > 0 (-EINVAL otherwise);
 *   clock NULL means am_now_ns; a clock must be monotonic and may be called
 *   with the object's lock held (so it must not use the object). 0 or a
 *   negative errno from the mutex. The object is embedded by its owner and
 *   lives until am_ratelimit_destroy; no call may be running then.
 * - am_ratelimit_allow: true when the caller may log now. A window starts at
 *   the first call after the previous one ended and lasts interval_ns; the
 *   first `burst` calls of a window are allowed, the rest refused and
 *   counted. *suppressed (may be NULL) gets the number of calls refused since
 *   the last allowed one: non-zero only on the first allowed call after a
 *   refusal, which takes the count (so each refused line is reported once).
 * - am_log_limited: am_log through a limiter; a line below the log threshold
 *   neither consumes the burst nor counts as suppressed. The first line let
 *   through after suppression ends with " (N similar lines suppressed)".
 * - Thread-safe: any call from any thread; one small mutex per object.
 */
#ifndef ACCMIG_RATELIMIT_H
#define ACCMIG_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

typedef uint64_t (*am_clock_fn)(void *opaque);

struct am_ratelimit {
    /* lock protects window_start_ns, in_window and suppressed; the rest is
     * set by init and read-only after. */
    pthread_mutex_t lock;
    uint64_t interval_ns;
    uint32_t burst;
    am_clock_fn clock;
    void *clock_opaque;
    uint64_t window_start_ns;
    uint32_t in_window;  /* calls allowed in the current window */
    bool started;        /* a window has begun */
    uint64_t suppressed; /* refused since the last allowed call */
};

int am_ratelimit_init(struct am_ratelimit *rl, uint32_t burst, uint64_t interval_ns,
                      am_clock_fn clock, void *clock_opaque);
void am_ratelimit_destroy(struct am_ratelimit *rl);
bool am_ratelimit_allow(struct am_ratelimit *rl, uint64_t *suppressed);

void am_log_limited(struct am_ratelimit *rl, enum am_log_level level, const char *module,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
