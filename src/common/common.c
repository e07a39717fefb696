#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <isa-l/crc.h>

static enum am_log_level log_threshold(void)
{
    static const char *const names[] = {"err", "guest", "unimp", "info", "debug"};
    const char *s = getenv("ACCMIG_LOG");

    if (s == NULL)
        return AM_LOG_ERR;
    for (size_t i = 0; i < AM_ARRAY_SIZE(names); i++)
        if (strcmp(s, names[i]) == 0)
            return (enum am_log_level)i;
    return AM_LOG_ERR;
}

bool am_log_enabled(enum am_log_level level)
{
    return level <= log_threshold();
}

void am_log(enum am_log_level level, const char *module, const char *fmt, ...)
{
    static const char *const tags[] = {"error", "guest-error", "unimplemented", "info", "debug"};
    char line[512];
    va_list ap;

    if (!am_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf so lines from concurrent threads do not interleave. */
    fprintf(stderr, "accmig[%d] %s: %s: %s\n", (int)getpid(), module, tags[level], line);
}

uint64_t am_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t am_crc32c(uint32_t crc, const void *buf, size_t len)
{
    /* ISA-L's crc32_iscsi takes and returns the register un-inverted. */
    return ~crc32_iscsi((unsigned char *)buf, (int)len, ~crc);
}

void am_bitmap_set_range(uint64_t *map, uint64_t first, uint64_t count)
{
    while (count > 0 && first % 64 != 0) {
        am_bitmap_set(map, first++);
        count--;
    }
    while (count >= 64) {
        __atomic_store_n(&map[first / 64], UINT64_MAX, __ATOMIC_RELAXED);
        first += 64;
        count -= 64;
    }
    while (count > 0) {
        am_bitmap_set(map, first++);
        count--;
    }
}

uint64_t am_bitmap_weight(const uint64_t *map, uint64_t nbits)
{
    uint64_t n = 0;

    for (uint64_t w = 0; w < nbits / 64; w++)
        n += (uint64_t)__builtin_popcountll(map[w]);
    if (nbits % 64)
        n += (uint64_t)__builtin_popcountll(map[nbits / 64] & ((UINT64_C(1) << (nbits % 64)) - 1));
    return n;
}

int am_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mult = 1;

    if (s == NULL || *s == '\0' || *s == '-')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno != 0)
        return -ERANGE;
    if (end == s)
        return -EINVAL;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': mult = UINT64_C(1) << 10; end++; break;
    case 'm': case 'M': mult = UINT64_C(1) << 20; end++; break;
    case 'g': case 'G': mult = UINT64_C(1) << 30; end++; break;
    default: return -EINVAL;
    }
    if (*end == 'i' || *end == 'B') /* accept KiB, MB style suffixes */
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0')
        return -EINVAL;
    if (__builtin_mul_overflow((uint64_t)v, mult, out) || *out > max)
        return -ERANGE;
    return 0;
}
