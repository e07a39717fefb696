/* common: small helpers every module uses.
 *
 * Contract: nothing here holds mutable global state. Errors are negative
 * errno values everywhere in accmig (0 = success). Logging goes to stderr;
 * the threshold comes from the ACCMIG_LOG environment variable
 * (err|guest|unimp|info|debug, default "err"), read at each call so that no
 * state is cached.
 */
#ifndef ACCMIG_COMMON_H
#define ACCMIG_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define AM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define AM_IS_POW2(x) ((x) != 0 && (((x) & ((x) - 1)) == 0))
#define AM_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define AM_ALIGN_UP(x, a) AM_ALIGN_DOWN((x) + (a) - 1, (a))

/* Overflow-checked a + b; returns true when the sum does not fit. */
static inline bool am_add_overflows_u64(uint64_t a, uint64_t b, uint64_t *sum)
{
    return __builtin_add_overflow(a, b, sum);
}

/* True when [off, off+len) lies inside [0, size) without wrapping. */
static inline bool am_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
    uint64_t end;
    return !am_add_overflows_u64(off, len, &end) && end <= size;
}

/* Log tiers (STYLE.md 13): our own failures, guest/peer mistakes,
 * unimplemented features, operator information, debug traces. */
enum am_log_level {
    AM_LOG_ERR = 0,
    AM_LOG_GUEST = 1,
    AM_LOG_UNIMP = 2,
    AM_LOG_INFO = 3,
    AM_LOG_DEBUG = 4,
};

void am_log(enum am_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool am_log_enabled(enum am_log_level level);

/* Monotonic clock in nanoseconds. */
uint64_t am_now_ns(void);

/* CRC32C (Castagnoli), the same polynomial as iSCSI; chainable:
 * am_crc32c(am_crc32c(0, a, n), b, m) == am_crc32c(0, a||b, n+m). */
uint32_t am_crc32c(uint32_t crc, const void *buf, size_t len);

/* Bitmaps of unsigned 64-bit words; bit i is word i/64, bit i%64. */
static inline void am_bitmap_set(uint64_t *map, uint64_t bit)
{
    __atomic_fetch_or(&map[bit / 64], UINT64_C(1) << (bit % 64), __ATOMIC_RELAXED);
}
static inline bool am_bitmap_test(const uint64_t *map, uint64_t bit)
{
    return (__atomic_load_n(&map[bit / 64], __ATOMIC_RELAXED) >> (bit % 64)) & 1;
}
/* Sets bits [first, first+count). */
void am_bitmap_set_range(uint64_t *map, uint64_t first, uint64_t count);
/* Number of set bits in the first nbits bits. */
uint64_t am_bitmap_weight(const uint64_t *map, uint64_t nbits);
static inline uint64_t am_bitmap_words(uint64_t nbits) { return (nbits + 63) / 64; }

/* Little-endian loads/stores at any alignment (device and wire structures
 * are little-endian; accmig only builds on little-endian hosts). */
static inline uint32_t am_le32(const void *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
static inline uint64_t am_le64(const void *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
static inline uint16_t am_le16(const void *p) { uint16_t v; __builtin_memcpy(&v, p, 2); return v; }
static inline void am_st32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
static inline void am_st64(void *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }
static inline void am_st16(void *p, uint16_t v) { __builtin_memcpy(p, &v, 2); }

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "accmig assumes a little-endian host");

/* Parse an unsigned decimal/hex integer with optional K/M/G suffix (powers of
 * 1024); -EINVAL on junk, -ERANGE above max. */
int am_parse_u64(const char *s, uint64_t max, uint64_t *out);

#endif
