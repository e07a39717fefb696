/* ratelimit: per-object log rate limiting; the contract is in ratelimit.h. */
#include "common/ratelimit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

static uint64_t default_clock(void *opaque)
{
    (void)opaque;
    return am_now_ns();
}

int am_ratelimit_init(struct am_ratelimit *rl, uint32_t burst, uint64_t interval_ns,
                      am_clock_fn clock, void *clock_opaque)
{
    int rc;

    if (burst == 0 || interval_ns == 0)
        return -EINVAL;
    rc = pthread_mutex_init(&rl->lock, NULL);
    if (rc != 0)
        return -rc;
    rl->interval_ns = interval_ns;
    rl->burst = burst;
    rl->clock = clock != NULL ? clock : default_clock;
    rl->clock_opaque = clock_opaque;
    rl->window_start_ns = 0;
    rl->in_window = 0;
    rl->started = false;
    rl->suppressed = 0;
    return 0;
}

void am_ratelimit_destroy(struct am_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->lock);
}

bool am_ratelimit_allow(struct am_ratelimit *rl, uint64_t *suppressed)
{
    uint64_t now, taken = 0;
    bool allow;

    pthread_mutex_lock(&rl->lock);
    now = rl->clock(rl->clock_opaque);
    /* Unsigned difference: a clock that steps back just keeps the window. */
    if (!rl->started || (now >= rl->window_start_ns && now - rl->window_start_ns >= rl->interval_ns)) {
        rl->started = true;
        rl->window_start_ns = now;
        rl->in_window = 0;
    }
    allow = rl->in_window < rl->burst;
    if (allow) {
        rl->in_window++;
        taken = rl->suppressed;
        rl->suppressed = 0;
    } else {
        rl->suppressed++;
    }
    pthread_mutex_unlock(&rl->lock);
    if (suppressed != NULL)
        *suppressed = taken;
    return allow;
}

void am_log_limited(struct am_ratelimit *rl, enum am_log_level level, const char *module,
                    const char *fmt, ...)
{
    char line[512];
    uint64_t n;
    va_list ap;

    if (!am_log_enabled(level) || !am_ratelimit_allow(rl, &n))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        am_log(level, module, "%s (%" PRIu64 " similar lines suppressed)", line, n);
    else
        am_log(level, module, "%s", line);
}
