/* Tests of src/zip: the ZIP engine against zlib as the independent codec.
 * "Guest RAM" is host memory mapped into a test IOMMU domain; SQEs are filled
 * the way the Linux hisi_zip driver fills them (flat and hardware SGL). */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "common/common.h"
#include "iommu/iommu.h"
#include "zip/zip.h"
#include "zip/zip_hw.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define PG IOMMU_PAGE_SIZE

/* Guest RAM layout (device addresses). */
#define RAM_IOVA (UINT64_C(0x10000000))
#define RAM_SIZE (48 * MIB)
#define SRC (RAM_IOVA)              /* 16 MiB */
#define DST (RAM_IOVA + 16 * MIB)   /* 16 MiB */
#define SGLS (RAM_IOVA + 32 * MIB)  /* 1 MiB of SGLs */
#define AREA (RAM_IOVA + 33 * MIB)  /* 15 MiB for scattered SGL data */
#define UNMAPPED (UINT64_C(0x7000000000))
#define EXTRA_IOVA (UINT64_C(0x40000000)) /* per-test extra mappings */

#define TAG_L 0x89abcdefu
#define TAG_H 0xfedcba98u

struct fx {
    struct iommu_domain *d;
    struct zip_engine *e;
    uint8_t *ram;
    uint8_t *ref;   /* scratch for zlib: 16 MiB */
    uint8_t *data;  /* test input: 9 MiB */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(iommu_domain_create(0x0210, &f->d), 0);
    assert_int_equal(zip_engine_create(&f->e), 0);
    f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(f->ram != MAP_FAILED);
    assert_int_equal(iommu_map_host(f->d, RAM_IOVA, RAM_SIZE, f->ram, IOMMU_READ | IOMMU_WRITE), 0);
    f->ref = malloc(16 * MIB);
    f->data = malloc(9 * MIB);
    assert_non_null(f->ref);
    assert_non_null(f->data);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    zip_engine_destroy(f->e);
    iommu_domain_destroy(f->d);
    munmap(f->ram, RAM_SIZE);
    free(f->ref);
    free(f->data);
    free(f);
    return 0;
}

static uint8_t *H(struct fx *f, uint64_t iova)
{
    assert_true(iova >= RAM_IOVA && iova < RAM_IOVA + RAM_SIZE);
    return f->ram + (iova - RAM_IOVA);
}

/* ---- data ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng_next(&s) >> 24);
}

static void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
    static const char *const words[] = { "queue ",  "manager ", "doorbell ", "completion ",
                                         "the ",    "of ",      "migration ", "device ",
                                         "state ",  "page ",    "dirty ",     "vfio ",
                                         "engine ", "zip ",     "tag\n",      "stream, " };
    uint64_t s = seed | 1;
    size_t i = 0;

    while (i < n) {
        const char *w = words[rng_next(&s) % AM_ARRAY_SIZE(words)];
        for (; *w && i < n; w++)
            p[i++] = (uint8_t)*w;
    }
}

/* ---- SQEs ---- */

/* Fills every dword with junk the engine must leave alone, then the fields. */
static void sqe_fill(uint32_t *sqe, unsigned type, unsigned buf, uint64_t src, uint32_t in_off,
                     uint32_t in_len, uint64_t dst, uint32_t out_off, uint32_t out_len)
{
    for (unsigned i = 0; i < ZIP_SQE_DWORDS; i++)
        sqe[i] = 0xa5a50000u | i;
    sqe[ZIP_SQE_DW3] = 0x5a5a0100u | 0x77u; /* bit 8 and high bits kept, stale status */
    sqe[ZIP_SQE_INPUT_LEN] = in_len;
    sqe[ZIP_SQE_DW7] = ZIP_SQE_TYPE_V3 << ZIP_DW7_SQE_TYPE_SHIFT | in_off;
    sqe[ZIP_SQE_DW8] = out_off;
    sqe[ZIP_SQE_DW9] = type | buf << ZIP_DW9_BUF_TYPE_SHIFT;
    sqe[ZIP_SQE_DEST_AVAIL] = out_len;
    sqe[ZIP_SQE_SRC_ADDR_L] = (uint32_t)src;
    sqe[ZIP_SQE_SRC_ADDR_H] = (uint32_t)(src >> 32);
    sqe[ZIP_SQE_DST_ADDR_L] = (uint32_t)dst;
    sqe[ZIP_SQE_DST_ADDR_H] = (uint32_t)(dst >> 32);
    sqe[ZIP_SQE_TAG_L] = TAG_L;
    sqe[ZIP_SQE_TAG_H] = TAG_H;
}

#define STATUS(sqe) ((sqe)[ZIP_SQE_DW3] & ZIP_DW3_STATUS_MASK)
#define CONSUMED(sqe) ((sqe)[ZIP_SQE_CONSUMED])
#define PRODUCED(sqe) ((sqe)[ZIP_SQE_PRODUCED])

/* A job governor as the QM's: writes go to the domain, a flag cancels. */
struct run_ctl {
    struct iommu_domain *d;
    const atomic_bool *cancel;
};

static int run_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct run_ctl *c = opaque;

    return iommu_dma_write(c->d, iova, buf, len);
}

static bool run_cancelled(void *opaque)
{
    struct run_ctl *c = opaque;

    return c->cancel && atomic_load(c->cancel);
}

static const struct zip_job_ops run_ops = { .write = run_write, .cancelled = run_cancelled };

/* Runs one job; every dword other than the results must come back as it
 * was, and a job that did not complete must leave the whole SQE alone. */
static int run(struct fx *f, uint32_t *sqe, enum zip_alg_dir dir, const atomic_bool *cancel)
{
    uint32_t before[ZIP_SQE_DWORDS];
    struct run_ctl ctl = { .d = f->d, .cancel = cancel };
    int rc;

    memcpy(before, sqe, sizeof(before));
    rc = zip_engine_run(f->e, f->d, sqe, dir, &run_ops, &ctl);
    if (rc) {
        assert_memory_equal(sqe, before, sizeof(before));
        return rc;
    }
    for (unsigned i = 0; i < ZIP_SQE_DWORDS; i++) {
        if (i == ZIP_SQE_CONSUMED || i == ZIP_SQE_PRODUCED || i == ZIP_SQE_DW3)
            continue;
        assert_int_equal(sqe[i], before[i]);
    }
    assert_int_equal(sqe[ZIP_SQE_DW3] & ~ZIP_DW3_STATUS_MASK, before[ZIP_SQE_DW3] & ~ZIP_DW3_STATUS_MASK);
    return 0;
}

/* ---- zlib side ---- */

static const uint8_t zlib_hdr[2] = { 0x78, 0x9c };
static const uint8_t gzip_hdr[10] = { 0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03 };

static uint32_t hdr_len(unsigned type)
{
    return type == ZIP_REQ_ZLIB ? 2 : type == ZIP_REQ_GZIP ? 10 : 0;
}

static const uint8_t *hdr_bytes(unsigned type)
{
    return type == ZIP_REQ_ZLIB ? zlib_hdr : gzip_hdr;
}

static int zlib_wbits(unsigned type)
{
    return type == ZIP_REQ_ZLIB ? 15 : type == ZIP_REQ_GZIP ? 31 : -15;
}

/* Inflates exactly [0, len) of stream with zlib (which checks the zlib and
 * gzip trailers); returns the output length, or -1 unless the stream ends
 * exactly at len. */
static long zlib_inflate_exact(const uint8_t *stream, size_t len, int wbits, uint8_t *out,
                               size_t cap)
{
    z_stream z;
    long n;
    int rc;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, wbits) != Z_OK)
        return -1;
    z.next_in = (uint8_t *)stream;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    rc = inflate(&z, Z_FINISH);
    n = (long)z.total_out;
    if (rc != Z_STREAM_END || z.avail_in != 0)
        n = -1;
    inflateEnd(&z);
    return n;
}

/* Raw-inflates with zlib one output byte per call, so that zlib's window
 * (1 << wbits bytes) is all the history it has: a distance further back
 * fails. Returns the output length, or -1. */
static long zlib_inflate_in_window(const uint8_t *stream, size_t len, int wbits, uint8_t *out,
                                   size_t cap)
{
    z_stream z;
    int rc = Z_OK;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -wbits) != Z_OK)
        return -1;
    z.next_in = (uint8_t *)stream;
    z.avail_in = (uInt)len;
    while (rc == Z_OK && z.total_out < cap) {
        z.next_out = out + z.total_out;
        z.avail_out = 1;
        rc = inflate(&z, Z_NO_FLUSH);
    }
    if (rc == Z_OK) {
        uint8_t spare;
        z.next_out = &spare;
        z.avail_out = 1;
        rc = inflate(&z, Z_NO_FLUSH);
        if (z.avail_out == 0)
            rc = Z_DATA_ERROR; /* more output than expected */
    }
    inflateEnd(&z);
    return rc == Z_STREAM_END ? (long)z.total_out : -1;
}

/* Deflates with zlib in the given format (header included); returns the
 * stream length. */
static size_t zlib_deflate(unsigned type, int level, const uint8_t *in, size_t n, uint8_t *out,
                           size_t cap)
{
    z_stream z;
    size_t len;

    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, level, Z_DEFLATED, zlib_wbits(type), 8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    z.next_in = (uint8_t *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    len = z.total_out;
    deflateEnd(&z);
    return len;
}

/* Compresses data[0, n) from SRC to DST (flat) the way the 6.1 driver does
 * for zlib/gzip: header written by the driver, output offset past it. */
static void compress_flat(struct fx *f, uint32_t *sqe, unsigned type, size_t n, uint32_t out_len)
{
    uint32_t off = hdr_len(type);

    memcpy(H(f, SRC), f->data, n);
    if (off)
        memcpy(H(f, DST), hdr_bytes(type), off);
    sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, 0, (uint32_t)n, DST, off, out_len);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
}

/* The device's output (with the driver's header before it) must inflate
 * with zlib to data[0, n). */
static void assert_zlib_reads_output(struct fx *f, const uint32_t *sqe, unsigned type, uint64_t dst,
                                     size_t n)
{
    long got = zlib_inflate_exact(H(f, dst), hdr_len(type) + PRODUCED(sqe), zlib_wbits(type),
                                  f->ref, 16 * MIB);

    assert_int_equal(got, (long)n);
    assert_memory_equal(f->ref, f->data, n);
}

/* ---- formats, sizes, data kinds ---- */

static const size_t sizes[] = { 0, 1, 4 * KIB, 1 * MIB, 8 * MIB };

static void test_compressed_output_of_every_format_inflates_with_zlib_at_every_size(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    for (unsigned kind = 0; kind < 2; kind++) {
        for (unsigned si = 0; si < AM_ARRAY_SIZE(sizes); si++) {
            size_t n = sizes[si];
            if (kind)
                fill_random(f->data, n, 7 + si);
            else
                fill_text(f->data, n, 3 + si);
            for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
                uint32_t out_len = (uint32_t)(ZIP_MAX_REQUEST - hdr_len(type));
                compress_flat(f, sqe, type, n, out_len);
                if (kind == 1 && n == 8 * MIB) {
                    /* Stored blocks and trailer push it past the 8 MiB cap. */
                    assert_int_equal(STATUS(sqe), ZIP_ST_DEST_TOO_SMALL);
                    continue;
                }
                if (kind == 0 && n >= 4 * KIB)
                    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
                else
                    assert_int_equal(STATUS(sqe), ZIP_ST_NEGATIVE_COMP);
                assert_int_equal(CONSUMED(sqe), n);
                assert_zlib_reads_output(f, sqe, type, DST, n);
            }
        }
    }
}

static void test_zlib_made_streams_of_every_format_decompress_at_every_size(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    for (unsigned kind = 0; kind < 2; kind++) {
        for (unsigned si = 0; si < AM_ARRAY_SIZE(sizes); si++) {
            size_t n = sizes[si];
            if (kind)
                fill_random(f->data, n, 11 + si);
            else
                fill_text(f->data, n, 5 + si);
            for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
                uint32_t off = hdr_len(type);
                size_t len = zlib_deflate(type, n > MIB ? 1 : 6, f->data, n, H(f, SRC), 16 * MIB);

                memset(H(f, DST), 0xee, n + 16);
                sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off), DST, 0,
                         (uint32_t)n);
                assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
                if (len > ZIP_MAX_REQUEST) {
                    assert_int_equal(STATUS(sqe), ZIP_ST_TOO_BIG);
                    continue;
                }
                assert_int_equal(STATUS(sqe), ZIP_ST_OK);
                assert_int_equal(PRODUCED(sqe), n);
                assert_int_equal(CONSUMED(sqe), len - off);
                assert_memory_equal(H(f, DST), f->data, n);
                assert_int_equal(H(f, DST)[n], 0xee); /* nothing past the output */
            }
        }
    }
}

static void test_requests_over_8_mib_are_refused_with_0x04(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    memset(H(f, DST), 0x3c, 64);
    /* input length 8 MiB + 1 */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, ZIP_MAX_REQUEST + 1, DST, 0, MIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_TOO_BIG);
    assert_int_equal(PRODUCED(sqe), 0);
    /* input offset + length 8 MiB + 1 */
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 2, ZIP_MAX_REQUEST - 1, DST, 0, MIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_TOO_BIG);
    /* output space 8 MiB + 1, and output offset + space */
    sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_FLAT, SRC, 0, 100, DST, 0, ZIP_MAX_REQUEST + 1);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_TOO_BIG);
    sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_FLAT, SRC, 0, 100, DST, 10, ZIP_MAX_REQUEST - 9);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_TOO_BIG);
    /* the largest offset with any length */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, ZIP_DW7_OFFSET_MASK, 0, DST, 0, 100);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_TOO_BIG);
    for (unsigned i = 0; i < 64; i++)
        assert_int_equal(H(f, DST)[i], 0x3c);
}

static void test_exactly_8_mib_of_input_and_output_is_accepted(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    size_t len;

    fill_text(f->data, 8 * MIB, 99);
    compress_flat(f, sqe, ZIP_REQ_DEFLATE, 8 * MIB, 8 * MIB);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    len = PRODUCED(sqe);
    /* Decompress it back into exactly 8 MiB of output space. */
    memcpy(H(f, SRC), H(f, DST), len);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, (uint32_t)len, DST, 0, 8 * MIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_int_equal(PRODUCED(sqe), 8 * MIB);
    assert_memory_equal(H(f, DST), f->data, 8 * MIB);
}

static void test_empty_input_compresses_to_a_complete_empty_stream(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        compress_flat(f, sqe, type, 0, 64);
        assert_int_equal(STATUS(sqe), ZIP_ST_NEGATIVE_COMP);
        assert_int_equal(CONSUMED(sqe), 0);
        assert_true(PRODUCED(sqe) > 0);
        assert_zlib_reads_output(f, sqe, type, DST, 0);
    }
}

static void test_decompressing_empty_input_is_corrupt(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, 0, 0, DST, 0, 4096);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_CORRUPT);
        assert_int_equal(PRODUCED(sqe), 0);
    }
}

static void test_incompressible_input_is_negative_compression_with_a_valid_stream(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    fill_random(f->data, 64 * KIB, 5);
    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        compress_flat(f, sqe, type, 64 * KIB, 128 * KIB);
        assert_int_equal(STATUS(sqe), ZIP_ST_NEGATIVE_COMP);
        assert_true(PRODUCED(sqe) > 64 * KIB);
        assert_int_equal(CONSUMED(sqe), 64 * KIB);
        assert_zlib_reads_output(f, sqe, type, DST, 64 * KIB);
    }
}

/* Hardware reads and writes by DMA, so a job whose destination overlaps its
 * source just produces what the bytes say at the time; the model must give
 * a defined result too (never undefined behaviour: the codec only ever sees
 * the engine's own buffers). */
static void test_overlapping_source_and_destination_give_a_defined_status(void **state)
{
    static const uint64_t shifts[] = { 0, 4 * KIB, 64 * KIB - 1 };
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    for (unsigned i = 0; i < AM_ARRAY_SIZE(shifts); i++) {
        for (enum zip_alg_dir dir = ZIP_ALG_COMPRESS; dir <= ZIP_ALG_DECOMPRESS; dir++) {
            uint32_t st;

            fill_text(H(f, SRC), 256 * KIB, 11 + i);
            sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 256 * KIB, SRC + shifts[i], 0,
                     256 * KIB);
            assert_int_equal(run(f, sqe, dir, NULL), 0);
            st = STATUS(sqe);
            assert_true(st == ZIP_ST_OK || st == ZIP_ST_NEGATIVE_COMP || st == ZIP_ST_CORRUPT ||
                        st == ZIP_ST_DEST_TOO_SMALL);
            assert_true(CONSUMED(sqe) <= 256 * KIB);
            assert_true(PRODUCED(sqe) <= 256 * KIB);
        }
    }
}

static void test_window_field_limits_the_match_distance(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    static const int wbits[] = { 12, 13, 14, 14, 15 };
    uint32_t produced[ZIP_WIN_MAX + 1];

    /* A random 6 KiB block repeated: every match lies 6 KiB back. */
    fill_random(f->data, 6 * KIB, 1);
    for (size_t i = 6 * KIB; i < 128 * KIB; i++)
        f->data[i] = f->data[i - 6 * KIB];
    memcpy(H(f, SRC), f->data, 128 * KIB);
    for (unsigned win = 0; win <= ZIP_WIN_MAX; win++) {
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 128 * KIB, DST, 0, 256 * KIB);
        sqe[ZIP_SQE_DW9] |= win << ZIP_DW9_WIN_SHIFT;
        assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
        produced[win] = PRODUCED(sqe);
        /* zlib holding only that window's history reads it back. */
        assert_int_equal(zlib_inflate_in_window(H(f, DST), produced[win], wbits[win], f->ref,
                                                128 * KIB),
                         128 * KIB);
        assert_memory_equal(f->ref, f->data, 128 * KIB);
    }
    /* 32K found the 6K matches a 4K window could not reach (and so this
     * check can fail). */
    assert_true(produced[ZIP_WIN_MAX] < produced[0]);
    assert_int_equal(zlib_inflate_in_window(H(f, DST), produced[ZIP_WIN_MAX], 12, f->ref, 128 * KIB),
                     -1);
}

/* ---- destination too small, corrupt input ---- */

static void test_compress_into_a_too_small_destination_is_0x0e(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];

    fill_text(f->data, MIB, 2);
    memset(H(f, DST), 0x11, 2 * KIB);
    compress_flat(f, sqe, ZIP_REQ_DEFLATE, MIB, KIB);
    assert_int_equal(STATUS(sqe), ZIP_ST_DEST_TOO_SMALL);
    assert_true(PRODUCED(sqe) <= KIB);
    for (unsigned i = KIB; i < 2 * KIB; i++)
        assert_int_equal(H(f, DST)[i], 0x11);
    /* No output space at all. */
    compress_flat(f, sqe, ZIP_REQ_GZIP, 10, 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DEST_TOO_SMALL);
    assert_int_equal(PRODUCED(sqe), 0);
}

static void test_decompress_into_a_too_small_destination_is_0x0e(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    size_t len;

    fill_text(f->data, 256 * KIB, 4);
    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        uint32_t off = hdr_len(type);

        len = zlib_deflate(type, 6, f->data, 256 * KIB, H(f, SRC), MIB);
        memset(H(f, DST), 0x22, 256 * KIB);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off), DST, 0,
                 256 * KIB - 1);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_DEST_TOO_SMALL);
        assert_int_equal(PRODUCED(sqe), 256 * KIB - 1);
        assert_int_equal(H(f, DST)[256 * KIB - 1], 0x22);
        /* Exactly the right size succeeds. */
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off), DST, 0, 256 * KIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_memory_equal(H(f, DST), f->data, 256 * KIB);
    }
}

static void test_corrupt_body_and_bad_trailers_are_0x03(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    size_t len;

    fill_text(f->data, 64 * KIB, 8);
    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        uint32_t off = hdr_len(type);
        size_t tl = type == ZIP_REQ_ZLIB ? 4 : type == ZIP_REQ_GZIP ? 8 : 0;

        /* Invalid block type 3 as the first block. */
        len = zlib_deflate(type, 6, f->data, 64 * KIB, H(f, SRC), MIB);
        H(f, SRC)[off] |= 0x06;
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off), DST, 0, MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_CORRUPT);

        /* Truncated: the last byte missing. */
        len = zlib_deflate(type, 6, f->data, 64 * KIB, H(f, SRC), MIB);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off - 1), DST, 0, MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_CORRUPT);

        if (!tl)
            continue;
        /* Every byte of the trailer matters (Adler-32; CRC-32 and ISIZE). */
        for (size_t i = len - tl; i < len; i++) {
            H(f, SRC)[i] ^= 0x40;
            sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off), DST, 0, MIB);
            assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
            assert_int_equal(STATUS(sqe), ZIP_ST_CORRUPT);
            H(f, SRC)[i] ^= 0x40;
        }
    }
}

static void test_consumed_counts_body_and_trailer_but_not_bytes_after_the_stream(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    size_t len;

    fill_text(f->data, 100 * KIB, 12);
    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        uint32_t off = hdr_len(type);

        len = zlib_deflate(type, 9, f->data, 100 * KIB, H(f, SRC), MIB);
        memset(H(f, SRC) + len, 0xff, 100);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, off, (uint32_t)(len - off + 100), DST, 0, MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_int_equal(CONSUMED(sqe), len - off);
        assert_int_equal(PRODUCED(sqe), 100 * KIB);
    }
}

/* ---- bad fields ---- */

static void assert_bad_sqe(struct fx *f, uint32_t *sqe, enum zip_alg_dir dir)
{
    assert_int_equal(run(f, sqe, dir, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_BAD_SQE);
    assert_int_equal(CONSUMED(sqe), 0);
    assert_int_equal(PRODUCED(sqe), 0);
}

static void test_bad_sqe_type_request_type_buffer_type_window_and_stateful_bits_are_0x01(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    static const unsigned bad_req[] = { 0, 4, 0x80, 0xff };

    fill_text(f->data, 4 * KIB, 1);
    memcpy(H(f, SRC), f->data, 4 * KIB);
    memset(H(f, DST), 0x5e, 64);
    for (enum zip_alg_dir dir = ZIP_ALG_COMPRESS; dir <= ZIP_ALG_DECOMPRESS; dir++) {
        for (unsigned t = 0; t < 16; t++) {
            if (t == ZIP_SQE_TYPE_V3)
                continue;
            sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 4 * KIB, DST, 0, 8 * KIB);
            sqe[ZIP_SQE_DW7] = (sqe[ZIP_SQE_DW7] & ~(0xfu << 28)) | t << 28;
            assert_bad_sqe(f, sqe, dir);
        }
        for (unsigned i = 0; i < AM_ARRAY_SIZE(bad_req); i++) {
            sqe_fill(sqe, bad_req[i], ZIP_BUF_FLAT, SRC, 0, 4 * KIB, DST, 0, 8 * KIB);
            assert_bad_sqe(f, sqe, dir);
        }
        for (unsigned b = 2; b < 16; b++) {
            sqe_fill(sqe, ZIP_REQ_DEFLATE, b, SRC, 0, 4 * KIB, DST, 0, 8 * KIB);
            assert_bad_sqe(f, sqe, dir);
        }
        for (unsigned w = ZIP_WIN_MAX + 1; w < 16; w++) {
            sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 4 * KIB, DST, 0, 8 * KIB);
            sqe[ZIP_SQE_DW9] |= w << ZIP_DW9_WIN_SHIFT;
            assert_bad_sqe(f, sqe, dir);
        }
        /* Flush or new stream without stream mode. */
        for (unsigned bit = 25; bit <= 27; bit += 2) {
            sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 4 * KIB, DST, 0, 8 * KIB);
            sqe[ZIP_SQE_DW7] |= 1u << bit;
            assert_bad_sqe(f, sqe, dir);
        }
        /* Stream mode with a context nobody mapped: a DMA fault, nothing written. */
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 4 * KIB, DST, 0, 8 * KIB);
        sqe[ZIP_SQE_DW7] |= ZIP_DW7_STATEFUL;
        assert_int_equal(run(f, sqe, dir, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
        assert_int_equal(H(f, DST)[0], 0x5e);
        /* A flat address whose offset + length wraps the 64-bit space. */
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, UINT64_MAX - 100, 50, 4 * KIB, DST, 0, 8 * KIB);
        assert_bad_sqe(f, sqe, dir);
    }
    for (unsigned i = 0; i < 64; i++)
        assert_int_equal(H(f, DST)[i], 0x5e);
}

static void test_bad_arguments_are_einval_and_leave_the_sqe_alone(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS], before[ZIP_SQE_DWORDS];

    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 10, DST, 0, 100);
    memcpy(before, sqe, sizeof(sqe));
    assert_int_equal(zip_engine_run(f->e, f->d, sqe, 2, NULL, NULL), -EINVAL);
    assert_int_equal(zip_engine_run(NULL, f->d, sqe, ZIP_ALG_COMPRESS, NULL, NULL), -EINVAL);
    assert_int_equal(zip_engine_run(f->e, NULL, sqe, ZIP_ALG_COMPRESS, NULL, NULL), -EINVAL);
    assert_int_equal(zip_engine_run(f->e, f->d, NULL, ZIP_ALG_COMPRESS, NULL, NULL), -EINVAL);
    assert_memory_equal(sqe, before, sizeof(sqe));
}

/* ---- DMA faults ---- */

static void test_unmapped_source_is_a_dma_fault_and_writes_nothing(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct iommu_stats st;

    memset(H(f, DST), 0x6b, 4 * KIB);
    for (enum zip_alg_dir dir = ZIP_ALG_COMPRESS; dir <= ZIP_ALG_DECOMPRESS; dir++) {
        sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_FLAT, UNMAPPED, 0, 4 * KIB, DST, 0, 4 * KIB);
        assert_int_equal(run(f, sqe, dir, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
        assert_int_equal(PRODUCED(sqe), 0);
    }
    for (unsigned i = 0; i < 4 * KIB; i++)
        assert_int_equal(H(f, DST)[i], 0x6b);
    iommu_stats_get(f->d, &st);
    assert_true(st.read_faults >= 2);
}

static void test_offset_past_the_end_of_a_flat_mapping_is_a_dma_fault(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t end = RAM_IOVA + RAM_SIZE;

    /* Source: the data starts past the mapping's end. */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, end - 4 * KIB, 8 * KIB, 100, DST, 0, 4 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    /* Destination: offset + space runs off the mapping. */
    fill_text(f->data, 100, 1);
    memcpy(H(f, SRC), f->data, 100);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 100, end - 8 * KIB, 8 * KIB - 16, 4 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    assert_int_equal(PRODUCED(sqe), 0);
}

/* Maps [EXTRA_IOVA, +len) onto host memory with perm; returns the host side. */
static uint8_t *map_extra(struct fx *f, uint64_t iova, size_t len, unsigned perm)
{
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    assert_true(p != MAP_FAILED);
    assert_int_equal(iommu_map_host(f->d, iova, len, p, perm), 0);
    return p;
}

static void test_read_only_destination_is_a_dma_fault_and_stays_untouched(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint8_t *ro = map_extra(f, EXTRA_IOVA, 256 * KIB, IOMMU_READ);
    struct iommu_stats st;
    size_t len;

    memset(ro, 0x77, 256 * KIB);
    fill_text(f->data, 128 * KIB, 3);
    memcpy(H(f, SRC), f->data, 128 * KIB);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 128 * KIB, EXTRA_IOVA, 2, 256 * KIB - 2);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    assert_int_equal(PRODUCED(sqe), 0);

    len = zlib_deflate(ZIP_REQ_DEFLATE, 6, f->data, 128 * KIB, H(f, SRC), MIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, (uint32_t)len, EXTRA_IOVA, 0, 256 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    for (size_t i = 0; i < 256 * KIB; i++)
        assert_int_equal(ro[i], 0x77);
    iommu_stats_get(f->d, &st);
    assert_true(st.perm_faults >= 2);
    assert_int_equal(iommu_unmap(f->d, EXTRA_IOVA, 256 * KIB), 0);
    munmap(ro, 256 * KIB);
}

static void test_output_running_into_an_unmapped_hole_touches_nothing_outside_the_mapping(
    void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    /* One host buffer; only its first 4 KiB page is mapped, the rest is the
     * host memory a stray write would hit. */
    uint8_t *host = mmap(NULL, 256 * KIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t len;

    assert_true(host != MAP_FAILED);
    assert_int_equal(iommu_map_host(f->d, EXTRA_IOVA, PG, host, IOMMU_READ | IOMMU_WRITE), 0);
    memset(host, 0x99, 256 * KIB);
    fill_random(f->data, 64 * KIB, 17);
    memcpy(H(f, SRC), f->data, 64 * KIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 64 * KIB, EXTRA_IOVA, 0, 128 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    for (size_t i = PG; i < 256 * KIB; i++)
        assert_int_equal(host[i], 0x99);

    len = zlib_deflate(ZIP_REQ_DEFLATE, 6, f->data, 64 * KIB, H(f, SRC), MIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, (uint32_t)len, EXTRA_IOVA, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    for (size_t i = PG; i < 256 * KIB; i++)
        assert_int_equal(host[i], 0x99);
    assert_int_equal(iommu_unmap(f->d, EXTRA_IOVA, PG), 0);
    munmap(host, 256 * KIB);
}

static void test_buffers_ending_at_a_guard_page_are_not_overrun(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    /* Two readable/writable pages followed by a PROT_NONE page: a codec
     * reading or writing one byte past the mapping crashes the test. */
    uint8_t *host = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t end = EXTRA_IOVA + 2 * PG;
    size_t n = 5000, len;

    assert_true(host != MAP_FAILED);
    assert_int_equal(mprotect(host + 2 * PG, PG, PROT_NONE), 0);
    assert_int_equal(iommu_map_host(f->d, EXTRA_IOVA, 2 * PG, host, IOMMU_READ | IOMMU_WRITE), 0);
    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        fill_text(f->data, n, type);
        /* Input ends at the guard. */
        memcpy(host + 2 * PG - n, f->data, n);
        if (hdr_len(type))
            memcpy(H(f, DST), hdr_bytes(type), hdr_len(type));
        sqe_fill(sqe, type, ZIP_BUF_FLAT, end - n, 0, (uint32_t)n, DST, hdr_len(type), MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_zlib_reads_output(f, sqe, type, DST, n);
        /* Compressed input (trailer last) ends at the guard. */
        len = zlib_deflate(type, 6, f->data, n, host + 2 * PG - 3000, 3000);
        memmove(host + 2 * PG - len, host + 2 * PG - 3000, len);
        memset(H(f, DST), 0, n);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, end - len, hdr_len(type), (uint32_t)(len - hdr_len(type)),
                 DST, 0, (uint32_t)n);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_memory_equal(H(f, DST), f->data, n);
        /* Output ends at the guard. */
        memcpy(H(f, SRC), host + 2 * PG - len, len);
        memset(host + 2 * PG - n, 0, n);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, hdr_len(type), (uint32_t)(len - hdr_len(type)),
                 end - n, 0, (uint32_t)n);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_memory_equal(host + 2 * PG - n, f->data, n);
    }
    assert_int_equal(iommu_unmap(f->d, EXTRA_IOVA, 2 * PG), 0);
    munmap(host, 3 * PG);
}

/* ---- bounce path: remote mappings and ranges across two mappings ---- */

struct remote_mem {
    uint8_t *mem;
    uint64_t iova;
    atomic_bool *cancel;      /* set after reads_before_cancel reads */
    unsigned reads_before_cancel;
    unsigned reads;
    bool fail_writes;
};

static int remote_read(void *opaque, uint64_t iova, void *buf, uint64_t len)
{
    struct remote_mem *r = opaque;

    memcpy(buf, r->mem + (iova - r->iova), len);
    if (r->cancel && ++r->reads == r->reads_before_cancel)
        atomic_store(r->cancel, true);
    return 0;
}

static int remote_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct remote_mem *r = opaque;

    if (r->fail_writes)
        return -EIO;
    memcpy(r->mem + (iova - r->iova), buf, len);
    return 0;
}

static const struct iommu_remote_ops remote_ops = { .read = remote_read, .write = remote_write };

#define REMOTE_SIZE (8 * MIB)

static struct remote_mem *map_remote(struct fx *f)
{
    struct remote_mem *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    r->mem = calloc(1, REMOTE_SIZE);
    assert_non_null(r->mem);
    r->iova = EXTRA_IOVA;
    assert_int_equal(iommu_map_remote(f->d, r->iova, REMOTE_SIZE, IOMMU_READ | IOMMU_WRITE,
                                      &remote_ops, r),
                     0);
    return r;
}

static void unmap_remote(struct fx *f, struct remote_mem *r)
{
    assert_int_equal(iommu_unmap(f->d, r->iova, REMOTE_SIZE), 0);
    free(r->mem);
    free(r);
}

static void test_remote_buffers_go_through_bounce_buffers_in_both_directions(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct remote_mem *r = map_remote(f);
    size_t n = 1 * MIB + 333;
    uint64_t rsrc = r->iova, rdst = r->iova + 2 * MIB;

    fill_text(f->data, n, 21);
    for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
        uint32_t off = hdr_len(type);
        uint32_t clen;

        /* remote -> remote compress */
        memcpy(r->mem, f->data, n);
        if (off)
            memcpy(r->mem + 2 * MIB, hdr_bytes(type), off);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, rsrc, 0, (uint32_t)n, rdst, off, 2 * MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        clen = PRODUCED(sqe);
        assert_int_equal(zlib_inflate_exact(r->mem + 2 * MIB, off + clen, zlib_wbits(type), f->ref,
                                            16 * MIB),
                         (long)n);
        assert_memory_equal(f->ref, f->data, n);
        /* remote -> local decompress of that stream, then local -> remote. */
        sqe_fill(sqe, type, ZIP_BUF_FLAT, rdst, off, clen, DST, 0, 2 * MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_int_equal(PRODUCED(sqe), n);
        assert_memory_equal(H(f, DST), f->data, n);
        memcpy(H(f, SRC), r->mem + 2 * MIB + off, clen);
        memset(r->mem + 4 * MIB, 0, n + 1);
        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC, 0, clen, r->iova + 4 * MIB, 0, 2 * MIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
        assert_int_equal(STATUS(sqe), ZIP_ST_OK);
        assert_memory_equal(r->mem + 4 * MIB, f->data, n);
        assert_int_equal(r->mem[4 * MIB + n], 0);
    }
    unmap_remote(f, r);
}

static void test_a_failing_remote_write_is_a_dma_fault(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct remote_mem *r = map_remote(f);

    r->fail_writes = true;
    fill_text(f->data, 64 * KIB, 2);
    memcpy(H(f, SRC), f->data, 64 * KIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 64 * KIB, r->iova, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    assert_int_equal(PRODUCED(sqe), 0);
    unmap_remote(f, r);
}

static void test_a_flat_buffer_spanning_two_mappings_is_read_and_written_whole(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    /* Two separate host buffers behind adjacent device ranges. */
    uint8_t *a = map_extra(f, EXTRA_IOVA, 64 * KIB, IOMMU_READ | IOMMU_WRITE);
    uint8_t *b = map_extra(f, EXTRA_IOVA + 64 * KIB, 192 * KIB, IOMMU_READ | IOMMU_WRITE);
    size_t n = 100 * KIB, first = 64 * KIB - 1000, len;

    fill_text(f->data, n, 31);
    memcpy(a + 1000, f->data, first);
    memcpy(b, f->data + first, n - first);
    sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_FLAT, EXTRA_IOVA, 1000, (uint32_t)n, DST, 10, MIB);
    memcpy(H(f, DST), gzip_hdr, 10);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_zlib_reads_output(f, sqe, ZIP_REQ_GZIP, DST, n);

    len = zlib_deflate(ZIP_REQ_DEFLATE, 6, f->data, n, H(f, SRC), MIB);
    memset(a, 0, 64 * KIB);
    memset(b, 0, 192 * KIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, (uint32_t)len, EXTRA_IOVA, 1000,
             (uint32_t)n);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_memory_equal(a + 1000, f->data, first);
    assert_memory_equal(b, f->data + first, n - first);
    assert_int_equal(b[n - first], 0);
    assert_int_equal(iommu_unmap(f->d, EXTRA_IOVA, 64 * KIB), 0);
    assert_int_equal(iommu_unmap(f->d, EXTRA_IOVA + 64 * KIB, 192 * KIB), 0);
    munmap(a, 64 * KIB);
    munmap(b, 192 * KIB);
}

/* ---- cancel ---- */

static void test_cancel_set_before_the_job_returns_ecanceled_and_touches_nothing(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    atomic_bool cancel = true;
    struct zip_engine_stats st;

    fill_text(f->data, 64 * KIB, 1);
    memcpy(H(f, SRC), f->data, 64 * KIB);
    memset(H(f, DST), 0x42, 64 * KIB);
    for (enum zip_alg_dir dir = ZIP_ALG_COMPRESS; dir <= ZIP_ALG_DECOMPRESS; dir++) {
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 64 * KIB, DST, 0, 64 * KIB);
        assert_int_equal(run(f, sqe, dir, &cancel), -ECANCELED);
    }
    for (size_t i = 0; i < 64 * KIB; i++)
        assert_int_equal(H(f, DST)[i], 0x42);
    zip_engine_stats_get(f->e, &st);
    assert_int_equal(st.cancelled, 2);
    assert_int_equal(st.jobs, 0);
}

static void test_cancel_during_a_job_returns_ecanceled_and_the_job_reruns_later(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    atomic_bool cancel = false;
    struct remote_mem *r = map_remote(f);
    size_t n = 2 * MIB, len;

    fill_text(f->data, n, 41);
    /* Compress: the cancel lands after the second chunk has been read. */
    memcpy(r->mem, f->data, n);
    r->cancel = &cancel;
    r->reads_before_cancel = 2;
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, r->iova, 0, (uint32_t)n, DST, 2, 4 * MIB);
    memcpy(H(f, DST), zlib_hdr, 2);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, &cancel), -ECANCELED);
    assert_int_equal(r->reads, 2);
    atomic_store(&cancel, false);
    r->cancel = NULL;
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, &cancel), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_zlib_reads_output(f, sqe, ZIP_REQ_ZLIB, DST, n);

    /* Decompress: same, the compressed input lives in the remote range. */
    len = zlib_deflate(ZIP_REQ_DEFLATE, 1, f->data, n, r->mem, REMOTE_SIZE);
    assert_true(len > 2 * ZIP_CHUNK);
    r->cancel = &cancel;
    r->reads = 0;
    r->reads_before_cancel = 2;
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, r->iova, 0, (uint32_t)len, DST, 0, 4 * MIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, &cancel), -ECANCELED);
    assert_int_equal(r->reads, 2);
    atomic_store(&cancel, false);
    r->cancel = NULL;
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, &cancel), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_memory_equal(H(f, DST), f->data, n);
    unmap_remote(f, r);
}

/* ---- hardware SGL ---- */

struct piece {
    uint64_t iova;
    uint32_t len;
};

/* Lays out len bytes as pieces of `chunk` bytes at descending, non-adjacent
 * addresses from `area` (so no two merge); returns the count. */
static unsigned pieces_layout(struct piece *p, size_t len, uint32_t chunk, uint64_t area)
{
    unsigned n = (unsigned)((len + chunk - 1) / chunk);

    for (unsigned i = 0; i < n; i++) {
        p[i].iova = area + (uint64_t)(n - 1 - i) * (chunk + PG);
        p[i].len = (uint32_t)AM_MIN((size_t)chunk, len - (size_t)i * chunk);
    }
    return n;
}

static void pieces_scatter(struct fx *f, const struct piece *p, unsigned n, const uint8_t *src)
{
    for (unsigned i = 0; i < n; i++) {
        memcpy(H(f, p[i].iova), src, p[i].len);
        src += p[i].len;
    }
}

static void pieces_gather(struct fx *f, const struct piece *p, unsigned n, uint8_t *dst)
{
    for (unsigned i = 0; i < n; i++) {
        memcpy(dst, H(f, p[i].iova), p[i].len);
        dst += p[i].len;
    }
}

/* Writes one SGL the way the Linux driver does: capacity `cap`, the pool's
 * size in entry_sum_in_chain, kernel pointers in header+56 and page_ctrl. */
static void sgl_write(struct fx *f, uint64_t at, uint64_t next, uint16_t cap, uint16_t nent,
                      const struct zip_sgl_entry *ent)
{
    struct zip_sgl_hdr h;

    memset(&h, 0, sizeof(h));
    h.next_dma = next;
    h.entry_sum_in_chain = cap;
    h.entry_sum_in_sgl = nent;
    h.entry_length_in_sgl = cap;
    h.drv_ptr = UINT64_C(0xffff888012345600);
    memcpy(H(f, at), &h, sizeof(h));
    memcpy(H(f, at + sizeof(h)), ent, (size_t)nent * sizeof(*ent));
}

/* Room for the largest SGL, a 64-byte multiple. */
#define SGL_STRIDE (64 + ZIP_SGL_MAX_ENTRIES * 32 + 32)
_Static_assert(SGL_STRIDE % ZIP_SGL_ALIGN == 0, "SGL stride keeps SGLs aligned");

/* Builds a chain of SGLs, packed from `at`, over the pieces, `per` entries
 * each, with a zero-length entry after every data entry when `gaps`.
 * Returns its address. */
static uint64_t sgl_chain(struct fx *f, uint64_t at, const struct piece *p, unsigned n, unsigned per,
                          bool gaps)
{
    struct zip_sgl_entry ent[ZIP_SGL_MAX_ENTRIES];
    uint64_t stride = AM_ALIGN_UP(64 + (uint64_t)per * 32, (uint64_t)ZIP_SGL_ALIGN);
    unsigned i = 0, k = 0;

    do {
        unsigned m = 0;
        uint64_t here = at + (uint64_t)k * stride;

        while (m < per && i < n) {
            memset(&ent[m], 0, sizeof(ent[m]));
            ent[m].buf = p[i].iova;
            ent[m].len = p[i].len;
            ent[m].page_ctrl = UINT64_C(0xffff888000000000) + i;
            m++;
            i++;
            if (gaps && m < per) {
                memset(&ent[m], 0, sizeof(ent[m]));
                ent[m].buf = UNMAPPED; /* never read: zero length */
                m++;
            }
        }
        sgl_write(f, here, i < n ? here + stride : 0, (uint16_t)per, (uint16_t)m, ent);
        k++;
    } while (i < n);
    return at;
}

static void test_sgl_with_many_entries_and_chained_sgls_round_trips_every_format(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece in[256], out[256];
    size_t n = 200 * KIB + 7;
    unsigned nin, nout;
    uint64_t sgl_in, sgl_out;

    fill_text(f->data, n, 51);
    for (unsigned per = 1; per <= 32; per *= 8) {
        for (unsigned type = ZIP_REQ_DEFLATE; type <= ZIP_REQ_GZIP; type++) {
            uint32_t off = hdr_len(type);
            uint32_t clen;

            /* Compress: input in 4 KiB pieces, output in 3000-byte pieces;
             * per 1 means one entry per SGL (long chains). */
            nin = pieces_layout(in, n, 4 * KIB, AREA);
            pieces_scatter(f, in, nin, f->data);
            nout = pieces_layout(out, MIB / 2, 3000 + off, AREA + 4 * MIB);
            assert_true(nout <= AM_ARRAY_SIZE(out));
            sgl_in = sgl_chain(f, SGLS, in, nin, per, per > 1);
            sgl_out = sgl_chain(f, SGLS + 512 * KIB, out, nout, per, false);
            if (off)
                memcpy(H(f, out[0].iova), hdr_bytes(type), off);
            sqe_fill(sqe, type, ZIP_BUF_SGL, sgl_in, 0, (uint32_t)n, sgl_out, off,
                     (uint32_t)(MIB / 2 - off));
            assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
            assert_int_equal(STATUS(sqe), ZIP_ST_OK);
            clen = PRODUCED(sqe);
            pieces_gather(f, out, nout, f->ref + 8 * MIB);
            assert_int_equal(zlib_inflate_exact(f->ref + 8 * MIB, off + clen, zlib_wbits(type),
                                                f->ref, 4 * MIB),
                             (long)n);
            assert_memory_equal(f->ref, f->data, n);

            /* Decompress the gathered stream from 1000-byte SGL pieces into
             * 5000-byte SGL pieces. */
            memcpy(f->ref, f->ref + 8 * MIB, off + clen);
            nin = pieces_layout(in, off + clen, 1000, AREA);
            assert_true(nin <= AM_ARRAY_SIZE(in));
            pieces_scatter(f, in, nin, f->ref);
            nout = pieces_layout(out, n, 5000, AREA + 4 * MIB);
            assert_true(nout <= AM_ARRAY_SIZE(out));
            for (unsigned i = 0; i < nout; i++)
                memset(H(f, out[i].iova), 0, out[i].len);
            sgl_in = sgl_chain(f, SGLS, in, nin, per, per > 1);
            sgl_out = sgl_chain(f, SGLS + 512 * KIB, out, nout, per, per > 1);
            sqe_fill(sqe, type, ZIP_BUF_SGL, sgl_in, off, clen, sgl_out, 0, (uint32_t)n);
            assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
            assert_int_equal(STATUS(sqe), ZIP_ST_OK);
            assert_int_equal(CONSUMED(sqe), clen);
            assert_int_equal(PRODUCED(sqe), n);
            pieces_gather(f, out, nout, f->ref);
            assert_memory_equal(f->ref, f->data, n);
        }
    }
}

static void test_sgl_entries_of_one_byte_each_work_in_both_directions(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece in[600], out[600];
    size_t n = 500;
    unsigned nin, nout;
    uint32_t clen;

    /* 500 one-byte entries: two SGLs of up to 255 entries. */
    fill_text(f->data, n, 81);
    nin = pieces_layout(in, n, 1, AREA);
    pieces_scatter(f, in, nin, f->data);
    nout = pieces_layout(out, 600, 1, AREA + 4 * MIB);
    sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_SGL, sgl_chain(f, SGLS, in, nin, 255, false), 0,
             (uint32_t)n, sgl_chain(f, SGLS + 256 * KIB, out, nout, 255, false), 0, 600);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    clen = PRODUCED(sqe);
    memcpy(f->ref + 8 * MIB, gzip_hdr, 10);
    pieces_gather(f, out, clen, f->ref + 8 * MIB + 10);
    assert_int_equal(zlib_inflate_exact(f->ref + 8 * MIB, 10 + clen, 31, f->ref, MIB), (long)n);
    assert_memory_equal(f->ref, f->data, n);

    /* And back, one byte in and one byte out per entry. */
    nin = pieces_layout(in, clen, 1, AREA);
    pieces_scatter(f, in, nin, f->ref + 8 * MIB + 10);
    nout = pieces_layout(out, n, 1, AREA + 4 * MIB);
    sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_SGL, sgl_chain(f, SGLS, in, nin, 255, false), 0, clen,
             sgl_chain(f, SGLS + 256 * KIB, out, nout, 255, false), 0, (uint32_t)n);
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_int_equal(CONSUMED(sqe), clen);
    assert_int_equal(PRODUCED(sqe), n);
    pieces_gather(f, out, nout, f->ref);
    assert_memory_equal(f->ref, f->data, n);
}

static void test_sgl_offsets_count_data_bytes_across_entries(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece in[16], out[16];
    size_t n = 10000;
    uint32_t in_off = 2 * 1024 + 500, out_off = 3 * 700 + 123; /* into the 3rd and 4th entries */
    unsigned nin, nout;
    uint64_t sgl_in, sgl_out;
    uint8_t *flat = f->ref + 8 * MIB;

    /* Input: 12 entries of 1 KiB, the data starts at in_off. */
    fill_text(f->data, n, 61);
    memset(flat, 0xcc, 12 * KIB);
    memcpy(flat + in_off, f->data, 12 * KIB - in_off);
    nin = pieces_layout(in, 12 * KIB, 1024, AREA);
    pieces_scatter(f, in, nin, flat);
    /* Output: 16 entries of 700 bytes, filled with a marker. */
    nout = pieces_layout(out, 16 * 700, 700, AREA + MIB);
    for (unsigned i = 0; i < nout; i++)
        memset(H(f, out[i].iova), 0xdd, out[i].len);
    sgl_in = sgl_chain(f, SGLS, in, nin, 5, true);
    sgl_out = sgl_chain(f, SGLS + 256 * KIB, out, nout, 16, false);
    /* The job's output space ends 1000 bytes before the SGL's data does. */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, sgl_in, in_off, 12 * KIB - in_off, sgl_out, out_off,
             16 * 700 - 1000 - out_off);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    pieces_gather(f, out, nout, flat);
    for (uint32_t i = 0; i < out_off; i++)
        assert_int_equal(flat[i], 0xdd);
    assert_int_equal(zlib_inflate_exact(flat + out_off, PRODUCED(sqe), -15, f->ref, MIB),
                     (long)(12 * KIB - in_off));
    assert_memory_equal(f->ref, f->data, 12 * KIB - in_off);
    /* Past the output space nothing changes (inside it, past the produced
     * bytes, the codec may have used the space as scratch). */
    for (size_t i = 16 * 700 - 1000; i < 16 * 700; i++)
        assert_int_equal(flat[i], 0xdd);
}

static void test_sgl_offset_past_its_data_or_a_source_chain_shorter_than_the_job_is_0x01_a_short_destination_is_less_space(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece p[4];
    unsigned np = pieces_layout(p, 16 * KIB, 4 * KIB, AREA);
    uint64_t two = sgl_chain(f, SGLS, p, np, 2, false);           /* two SGLs, 8 KiB each */
    uint64_t big = sgl_chain(f, SGLS + 128 * KIB, (struct piece[]){ { DST, 64 * KIB } }, 1, 4, false);

    /* offset past the data */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, two, 16 * KIB + 1, 0, big, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* offset + length past the data by one byte */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, two, 100, 16 * KIB - 99, big, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* all of the data exactly is fine, with or without an offset */
    fill_text(f->data, 16 * KIB, 1);
    pieces_scatter(f, p, np, f->data);
    /* An output space larger than the destination chain: the space is what
     * the chain holds (as the hardware walks it). 16 KiB of text deflates
     * into 16 KiB - 1 ... */
    uint64_t dst16 = sgl_chain(f, SGLS + 192 * KIB, (struct piece[]){ { DST, 16 * KIB } }, 1, 4,
                               false);

    memset(H(f, DST), 0xee, 16 * KIB + 16);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, two, 0, 16 * KIB, dst16, 1, 1024 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_true(PRODUCED(sqe) <= 16 * KIB - 1);
    assert_int_equal(zlib_inflate_exact(H(f, DST) + 1, PRODUCED(sqe), -15, f->ref, MIB), 16 * KIB);
    assert_memory_equal(f->ref, f->data, 16 * KIB);
    assert_int_equal(H(f, DST)[16 * KIB], 0xee); /* not a byte past the chain */
    /* ... and output that does not fit the chain is "destination too small". */
    fill_random(f->data, 16 * KIB, 3);
    pieces_scatter(f, p, np, f->data);
    memset(H(f, DST), 0xee, 16 * KIB + 16);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, two, 0, 16 * KIB, dst16, 0, 1024 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_true(STATUS(sqe) == ZIP_ST_DEST_TOO_SMALL || STATUS(sqe) == ZIP_ST_NEGATIVE_COMP);
    assert_int_equal(H(f, DST)[16 * KIB], 0xee);
    fill_text(f->data, 16 * KIB, 1);
    pieces_scatter(f, p, np, f->data);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, two, 0, 16 * KIB, big, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, two, 100, 16 * KIB - 100, big, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_int_equal(zlib_inflate_exact(H(f, DST), PRODUCED(sqe), -15, f->ref, MIB), 16 * KIB - 100);
    assert_memory_equal(f->ref, f->data + 100, 16 * KIB - 100);
}

static void test_sgl_chains_that_loop_are_0x01_and_ones_that_go_on_are_read_only_as_far_as_the_job(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct zip_sgl_entry ent;
    uint64_t a = SGLS, b = SGLS + SGL_STRIDE;
    uint64_t dsgl = sgl_chain(f, SGLS + 64 * KIB, (struct piece[]){ { DST, 64 * KIB } }, 1, 4, false);

    memset(&ent, 0, sizeof(ent));
    ent.buf = AREA;
    ent.len = 4 * KIB;
    /* An SGL whose next_dma is itself: 8 KiB would be "found" on the second
     * visit, but revisiting is a loop. */
    sgl_write(f, a, a, 1, 1, &ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, a, 0, 8 * KIB, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* A -> B -> A with no data at all: never satisfies any length. */
    sgl_write(f, a, b, 4, 0, &ent);
    sgl_write(f, b, a, 4, 0, &ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, a, 0, 1, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* A (4 KiB) -> B (4 KiB) and the job needs only 4 KiB: B is never read,
     * even when B itself is garbage (a driver maps its whole list). */
    sgl_write(f, a, b, 1, 1, &ent);
    memset(H(f, b), 0x5a, 64);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, a, 0, 4 * KIB, dsgl, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_int_equal(CONSUMED(sqe), 4 * KIB);
    /* ... and needing 4 KiB + 1 reads B, which must then be sane. */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, a, 0, 4 * KIB + 1, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    sgl_write(f, b, 0, 1, 1, &ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, a, 0, 4 * KIB + 1, dsgl, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
}

/* Overlap shapes with SGLs: entries of one SGL over the same bytes, a
 * destination whose entries overlap each other, and output written over
 * the job's own SGLs (read once, before any data moves). Each gives a
 * status the spec defines, never undefined behaviour (ASan checks the
 * rest), and the device never writes outside the destination's entries. */
static void test_overlapping_sgl_shapes_give_a_defined_status(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece same[4], over[4];
    uint64_t in, out;

    fill_text(H(f, AREA), 64 * KIB, 5);
    for (unsigned i = 0; i < 4; i++) {
        same[i] = (struct piece){ AREA, 16 * KIB };               /* the same 16 KiB, four times */
        over[i] = (struct piece){ AREA + 8 * KIB * i, 16 * KIB }; /* each half over the next */
    }
    for (enum zip_alg_dir dir = ZIP_ALG_COMPRESS; dir <= ZIP_ALG_DECOMPRESS; dir++) {
        /* Source entries over one another; destination entries likewise,
         * and over the source. */
        in = sgl_chain(f, SGLS, same, 4, 4, false);
        out = sgl_chain(f, SGLS + 64 * KIB, over, 4, 4, false);
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, in, 0, 64 * KIB, out, 0, 64 * KIB);
        assert_int_equal(run(f, sqe, dir, NULL), 0);
        assert_true(STATUS(sqe) == ZIP_ST_OK || STATUS(sqe) == ZIP_ST_NEGATIVE_COMP ||
                    STATUS(sqe) == ZIP_ST_CORRUPT || STATUS(sqe) == ZIP_ST_DEST_TOO_SMALL);
        assert_true(CONSUMED(sqe) <= 64 * KIB && PRODUCED(sqe) <= 64 * KIB);
        /* Output over the job's own SGLs: the destination entry covers both
         * SGL structures. */
        in = sgl_chain(f, SGLS, (struct piece[]){ { AREA, 16 * KIB } }, 1, 4, false);
        out = sgl_chain(f, SGLS + 4 * KIB, (struct piece[]){ { SGLS, 64 * KIB } }, 1, 4, false);
        memset(H(f, SGLS + 64 * KIB), 0xee, 64);
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, in, 0, 16 * KIB, out, 0, 64 * KIB);
        assert_int_equal(run(f, sqe, dir, NULL), 0);
        assert_true(STATUS(sqe) == ZIP_ST_OK || STATUS(sqe) == ZIP_ST_NEGATIVE_COMP ||
                    STATUS(sqe) == ZIP_ST_CORRUPT || STATUS(sqe) == ZIP_ST_DEST_TOO_SMALL);
        assert_int_equal(H(f, SGLS + 64 * KIB)[0], 0xee); /* nothing past the entry */
        if (dir == ZIP_ALG_COMPRESS) {
            /* The SGLs were read before the output replaced them: the job is
             * whole and inflates back. */
            assert_int_equal(STATUS(sqe), ZIP_ST_OK);
            assert_int_equal(zlib_inflate_exact(H(f, SGLS), PRODUCED(sqe), -15, f->ref, MIB),
                             16 * KIB);
            assert_memory_equal(f->ref, H(f, AREA), 16 * KIB);
        }
    }
}

static void test_a_chain_of_more_than_256_sgls_is_0x01(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece p[ZIP_SGL_MAX_CHAIN + 1];
    uint64_t dsgl = sgl_chain(f, SGLS + 900 * KIB, (struct piece[]){ { DST, 64 * KIB } }, 1, 4, false);
    uint64_t sgl;

    /* 257 SGLs of one 16-byte entry each (128 bytes apart), data 64 bytes
     * apart so that nothing merges. */
    for (unsigned i = 0; i <= ZIP_SGL_MAX_CHAIN; i++) {
        p[i].iova = AREA + i * 64;
        p[i].len = 16;
    }
    sgl = sgl_chain(f, SGLS, p, ZIP_SGL_MAX_CHAIN + 1, 1, false);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, sgl, 0, (ZIP_SGL_MAX_CHAIN + 1) * 16, dsgl, 0,
             64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* Exactly 256 SGLs are fine. */
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, sgl + 128, 0, ZIP_SGL_MAX_CHAIN * 16, dsgl, 0,
             64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
}

static void test_sgl_entry_counts_over_capacity_and_unaligned_sgls_are_0x01(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct zip_sgl_entry ent[2];
    struct zip_sgl_hdr h;
    uint64_t dsgl = sgl_chain(f, SGLS + 64 * KIB, (struct piece[]){ { DST, 64 * KIB } }, 1, 4, false);

    memset(ent, 0, sizeof(ent));
    ent[0].buf = AREA;
    ent[0].len = 4 * KIB;
    ent[1] = ent[0];
    /* entry_sum_in_sgl (2) > entry_length_in_sgl (1) */
    sgl_write(f, SGLS, 0, 1, 2, ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS, 0, 4 * KIB, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* capacity 256 */
    sgl_write(f, SGLS, 0, 1, 1, ent);
    memcpy(&h, H(f, SGLS), sizeof(h));
    h.entry_length_in_sgl = ZIP_SGL_MAX_ENTRIES + 1;
    memcpy(H(f, SGLS), &h, sizeof(h));
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* unaligned first SGL (source, then destination) */
    sgl_write(f, SGLS + 32, 0, 1, 1, ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS + 32, 0, 4 * KIB, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    sgl_write(f, SGLS, 0, 1, 1, ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS, 0, 4 * KIB, dsgl + 8, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_DECOMPRESS);
    /* unaligned next_dma */
    sgl_write(f, SGLS, SGLS + 4 * KIB + 16, 1, 1, ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS, 0, 8 * KIB, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    /* an entry whose address + length wraps */
    ent[0].buf = UINT64_MAX - 100;
    sgl_write(f, SGLS, 0, 1, 1, ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS, 0, 4 * KIB, dsgl, 0, 64 * KIB);
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
}

static void test_unreadable_sgl_or_sgl_data_is_a_dma_fault(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct zip_sgl_entry ent;
    uint64_t dsgl = sgl_chain(f, SGLS + 64 * KIB, (struct piece[]){ { DST, 64 * KIB } }, 1, 4, false);

    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, UNMAPPED, 0, 4 * KIB, dsgl, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    /* next_dma pointing nowhere */
    memset(&ent, 0, sizeof(ent));
    ent.buf = AREA;
    ent.len = 4 * KIB;
    sgl_write(f, SGLS, UNMAPPED, 1, 1, &ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS, 0, 8 * KIB, dsgl, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
    /* an entry pointing nowhere */
    ent.buf = UNMAPPED;
    sgl_write(f, SGLS, 0, 1, 1, &ent);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_SGL, SGLS, 0, 4 * KIB, dsgl, 0, 64 * KIB);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_DMA_FAULT);
}

/* ---- the driver's own SQE ---- */

static void test_an_sqe_filled_like_the_linux_driver_round_trips_with_its_tag(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct piece src = { AREA, 4096 }, dst = { AREA + MIB, 8192 };
    uint64_t sgl_src = SGLS, sgl_dst = SGLS + SGL_STRIDE;
    uint64_t req_ptr = UINT64_C(0xffff0000deadbe00);
    uint32_t clen;

    /* hisi_zip_fill_sqe: memset 0, addresses, lengths, buffer type SGL,
     * request type 1, tag = request pointer in dw26/27, sqe_type 3;
     * one SGL per buffer with capacity sgl_sge_nr (10). */
    fill_text(f->data, 4096, 71);
    pieces_scatter(f, &src, 1, f->data);
    sgl_chain(f, sgl_src, &src, 1, 10, false);
    sgl_chain(f, sgl_dst, &dst, 1, 10, false);
    memset(sqe, 0, sizeof(sqe));
    sqe[ZIP_SQE_SRC_ADDR_L] = (uint32_t)sgl_src;
    sqe[ZIP_SQE_SRC_ADDR_H] = (uint32_t)(sgl_src >> 32);
    sqe[ZIP_SQE_DST_ADDR_L] = (uint32_t)sgl_dst;
    sqe[ZIP_SQE_DST_ADDR_H] = (uint32_t)(sgl_dst >> 32);
    sqe[ZIP_SQE_INPUT_LEN] = 4096;
    sqe[ZIP_SQE_DEST_AVAIL] = 8192;
    sqe[ZIP_SQE_DW9] = ZIP_BUF_SGL << ZIP_DW9_BUF_TYPE_SHIFT | ZIP_REQ_DEFLATE;
    sqe[ZIP_SQE_TAG_L] = (uint32_t)req_ptr;
    sqe[ZIP_SQE_TAG_H] = (uint32_t)(req_ptr >> 32);
    sqe[ZIP_SQE_DW7] = ZIP_SQE_TYPE_V3 << ZIP_DW7_SQE_TYPE_SHIFT;
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_int_equal(sqe[ZIP_SQE_DW3], 0);
    assert_int_equal((uint64_t)sqe[ZIP_SQE_TAG_L] | (uint64_t)sqe[ZIP_SQE_TAG_H] << 32, req_ptr);
    clen = PRODUCED(sqe);
    assert_int_equal(zlib_inflate_exact(H(f, dst.iova), clen, -15, f->ref, MIB), 4096);
    assert_memory_equal(f->ref, f->data, 4096);

    /* And back: dlen = the page size the caller offers. */
    memcpy(H(f, src.iova), H(f, dst.iova), clen);
    src.len = clen;
    sgl_chain(f, sgl_src, &src, 1, 10, false);
    sqe[ZIP_SQE_INPUT_LEN] = clen;
    assert_int_equal(run(f, sqe, ZIP_ALG_DECOMPRESS, NULL), 0);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    assert_int_equal(PRODUCED(sqe), 4096);
    assert_int_equal(CONSUMED(sqe), clen);
    assert_memory_equal(H(f, dst.iova), f->data, 4096);
}

static void test_stats_count_jobs_errors_and_bytes(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct zip_engine_stats st;

    fill_text(f->data, 8 * KIB, 1);
    compress_flat(f, sqe, ZIP_REQ_DEFLATE, 8 * KIB, 64 * KIB);
    assert_int_equal(STATUS(sqe), ZIP_ST_OK);
    sqe_fill(sqe, 9, ZIP_BUF_FLAT, SRC, 0, 1, DST, 0, 1);
    assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
    compress_flat(f, sqe, ZIP_REQ_DEFLATE, 1, 64);  /* 0x0d is not an error */
    zip_engine_stats_get(f->e, &st);
    assert_int_equal(st.jobs, 3);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.cancelled, 0);
    assert_int_equal(st.bytes_in, 8 * KIB + 1);
    assert_true(st.bytes_out > 0 && st.bytes_out < 8 * KIB);
}

/* ---- stream mode (docs/stream-mode.md) ---- */

#define CTX (RAM_IOVA + 47 * MIB) /* one 64 KiB stream context */

/* One piece: the SQE with stream bits, run, and the context it leaves
 * written back as the QM does at commit. */
static uint32_t stream_piece(struct fx *f, uint32_t *sqe, enum zip_alg_dir dir, bool first,
                             bool last)
{
    const void *ctx;
    uint64_t iova;
    uint32_t len;

    sqe[ZIP_SQE_DW7] |= ZIP_DW7_STATEFUL | (first ? ZIP_DW7_NEW_STREAM : 0) |
                        (last ? ZIP_DW7_FLUSH : 0);
    sqe[ZIP_SQE_CTX_ADDR_L] = (uint32_t)CTX;
    sqe[ZIP_SQE_CTX_ADDR_H] = (uint32_t)(CTX >> 32);
    assert_int_equal(run(f, sqe, dir, NULL), 0);
    if (zip_engine_stream_ctx(f->e, &iova, &ctx, &len)) {
        assert_int_equal(iova, CTX);
        memcpy(H(f, CTX), ctx, len);
    }
    return STATUS(sqe);
}

/* Compresses data[0, n) in pieces of the sizes rng gives, into one buffer
 * (header by the driver for zlib/gzip, as the stateless path); returns the
 * stream's length. */
static size_t stream_compress(struct fx *f, unsigned type, size_t n, uint64_t seed, uint32_t maxp)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    size_t in = 0, outp = hdr_len(type);

    memcpy(H(f, DST), hdr_bytes(type), outp);
    memcpy(H(f, SRC), f->data, n);
    do {
        uint64_t want = rng_next(&seed) % maxp; /* AM_MIN evaluates twice */
        uint32_t piece = (uint32_t)AM_MIN(want, (uint64_t)(n - in));
        bool first = in == 0, last = in + piece == n;

        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC + in, 0, piece, DST + outp, 0,
                 (uint32_t)AM_MIN(16 * MIB - outp, 4 * MIB));
        assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, first, last), ZIP_ST_OK);
        assert_int_equal(CONSUMED(sqe), piece);
        in += piece;
        outp += PRODUCED(sqe);
    } while (in < n);
    return outp;
}

static void test_a_stream_compressed_in_pieces_inflates_whole_with_zlib(void **state)
{
    struct fx *f = *state;
    static const unsigned types[] = { ZIP_REQ_DEFLATE, ZIP_REQ_ZLIB, ZIP_REQ_GZIP };
    static const uint32_t maxp[] = { 1, 4096, 70000, 1 << 20 };

    fill_text(f->data, 3 * MIB, 21);
    for (size_t t = 0; t < AM_ARRAY_SIZE(types); t++) {
        for (size_t m = 0; m < AM_ARRAY_SIZE(maxp); m++) {
            size_t n = maxp[m] == 1 ? 5000 : 3 * MIB; /* pieces of 0 bytes too */
            size_t len = stream_compress(f, types[t], n, 7 + t + m, maxp[m] + 1);
            long got = zlib_inflate_exact(H(f, DST), len, zlib_wbits(types[t]), f->ref, 16 * MIB);

            if (got != (long)n)
                fail_msg("type %u, pieces up to %u: zlib read %ld of %zu bytes", types[t], maxp[m],
                         got, n);
            assert_memory_equal(f->ref, f->data, n);
        }
    }
    /* History crosses pieces: 4 KiB pieces of one stream compress better
     * than the same pieces as separate streams (each alone) do. */
    size_t whole = stream_compress(f, ZIP_REQ_DEFLATE, 1 * MIB, 3, 4097), alone = 0;
    uint32_t sqe[ZIP_SQE_DWORDS];

    for (size_t off = 0; off < 1 * MIB; off += 4 * KIB) {
        memcpy(H(f, SRC), f->data + off, 4 * KIB);
        sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 4 * KIB, DST, 0, 64 * KIB);
        assert_int_equal(run(f, sqe, ZIP_ALG_COMPRESS, NULL), 0);
        alone += PRODUCED(sqe);
    }
    assert_true(whole < alone);
}

/* Decompresses stream[0, len) in input pieces of random sizes into output
 * spaces of random sizes, giving back what the device did not consume;
 * returns the bytes produced (into f->ref). */
static size_t stream_inflate(struct fx *f, unsigned type, const uint8_t *stream, size_t len,
                             uint64_t seed, uint32_t minin, uint32_t maxin, uint32_t maxout)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    size_t in = hdr_len(type), produced = 0;
    bool first = true;
    unsigned rounds = 0;

    memcpy(H(f, SRC), stream, len);
    for (;;) {
        uint64_t want = minin + 1 + rng_next(&seed) % maxin; /* AM_MIN evaluates twice */
        uint32_t piece = (uint32_t)AM_MIN(want, (uint64_t)(len - in));
        uint32_t space = (uint32_t)(1 + rng_next(&seed) % maxout);

        sqe_fill(sqe, type, ZIP_BUF_FLAT, SRC + in, 0, piece, DST, 0, space);
        uint32_t st = stream_piece(f, sqe, ZIP_ALG_DECOMPRESS, first, false);

        if (!(st == ZIP_ST_OK || st == ZIP_ST_END_OF_STREAM || st == ZIP_ST_DEST_TOO_SMALL))
            fail_msg("piece at %zu (+%u, space %u, round %u): status %#x (%s)", in, piece, space,
                     rounds, st, zip_engine_last_error(f->e));
        assert_true(CONSUMED(sqe) <= piece);
        assert_true(PRODUCED(sqe) <= space);
        if (st != ZIP_ST_DEST_TOO_SMALL)
            first = false;
        memcpy(f->ref + produced, H(f, DST), PRODUCED(sqe));
        produced += PRODUCED(sqe);
        in += CONSUMED(sqe);
        if (st == ZIP_ST_END_OF_STREAM)
            return produced;
        assert_true(++rounds < 200000);
    }
}

static void test_a_stream_decompressed_in_pieces_gives_back_the_data(void **state)
{
    struct fx *f = *state;
    static const unsigned types[] = { ZIP_REQ_DEFLATE, ZIP_REQ_ZLIB, ZIP_REQ_GZIP };
    static const int levels[] = { 0, 1, 6, 9 };
    uint8_t *z = malloc(8 * MIB);

    assert_non_null(z);
    fill_text(f->data, 1 * MIB, 5);
    fill_random(f->data + 1 * MIB, 256 * KIB, 6); /* stored blocks at level 0 and beyond */
    for (size_t t = 0; t < AM_ARRAY_SIZE(types); t++) {
        for (size_t l = 0; l < AM_ARRAY_SIZE(levels); l++) {
            size_t n = 1 * MIB + 256 * KIB;
            size_t zl = zlib_deflate(types[t], levels[l], f->data, n, z, 8 * MIB);
            /* Blocks longer than the context holds (stored blocks of 64 KiB
             * at level 0, some of zlib's at other levels) need a piece
             * that brings the rest of the block (docs/stream-mode.md):
             * pieces of 33 KiB and more. */
            uint32_t minin = 33 * KIB;
            size_t got = stream_inflate(f, types[t], z, zl, 11 + t + l, minin, 9000, 70000);

            assert_int_equal(got, n);
            assert_memory_equal(f->ref, f->data, n);
            /* Tiny output spaces. */
            assert_int_equal(stream_inflate(f, types[t], z, zl, 3, 33 * KIB, 7, 300), n);
            assert_memory_equal(f->ref, f->data, n);
        }
    }
    /* Tiny input pieces work while each block fits the context: zlib's
     * level 1 on 64 KiB of text makes small blocks. */
    size_t zl = zlib_deflate(ZIP_REQ_DEFLATE, 1, f->data, 64 * KIB, z, 8 * MIB);

    assert_int_equal(stream_inflate(f, ZIP_REQ_DEFLATE, z, zl, 4, 0, 7, 300), 64 * KIB);
    assert_memory_equal(f->ref, f->data, 64 * KIB);
    free(z);
}

/* The context is guest memory: whatever is in it gives a defined status
 * (0x01 for one the device did not leave), never undefined behaviour. */
static void test_a_garbage_or_foreign_stream_context_is_0x01(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS];
    uint64_t seed = 99;

    fill_text(f->data, 64 * KIB, 1);
    memcpy(H(f, SRC), f->data, 64 * KIB);
    for (unsigned i = 0; i < 200; i++) {
        for (size_t k = 0; k < 64 * KIB; k += 8) {
            uint64_t v = rng_next(&seed);

            memcpy(H(f, CTX) + k, &v, 8);
        }
        if (i % 2) /* a right magic and version, the rest garbage */
            memcpy(H(f, CTX), "ZCCX\x01", 5);
        for (enum zip_alg_dir dir = ZIP_ALG_COMPRESS; dir <= ZIP_ALG_DECOMPRESS; dir++) {
            sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 64 * KIB, DST, 0, 1 * MIB);
            uint32_t st = stream_piece(f, sqe, dir, false, false);

            assert_true(st == ZIP_ST_BAD_SQE || st == ZIP_ST_CORRUPT || st == ZIP_ST_OK ||
                        st == ZIP_ST_STREAM_BLOCK || st == ZIP_ST_DEST_TOO_SMALL);
        }
    }
    /* A compression context continued as a decompression one, an ended
     * stream continued, stream bits without stream mode, no context. */
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, true, true), ZIP_ST_OK);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, false, false), ZIP_ST_BAD_SQE);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, true, false), ZIP_ST_OK);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_DECOMPRESS, false, false), ZIP_ST_BAD_SQE);
    sqe_fill(sqe, ZIP_REQ_GZIP, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, false, false), ZIP_ST_BAD_SQE);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    sqe[ZIP_SQE_DW7] |= ZIP_DW7_NEW_STREAM;
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 0, 1000, DST, 0, 1 * MIB);
    sqe[ZIP_SQE_DW7] |= ZIP_DW7_STATEFUL | ZIP_DW7_NEW_STREAM;
    sqe[ZIP_SQE_CTX_ADDR_L] = 0;
    sqe[ZIP_SQE_CTX_ADDR_H] = 0;
    assert_bad_sqe(f, sqe, ZIP_ALG_COMPRESS); /* context address 0 */
}

/* A piece run twice from the same context (a job revoked before its commit
 * and replayed) gives the same bytes; a stream whose input ends early, or
 * whose trailer is wrong, is corrupt. */
static void test_a_replayed_piece_gives_the_same_bytes_and_bad_streams_are_0x03(void **state)
{
    struct fx *f = *state;
    uint32_t sqe[ZIP_SQE_DWORDS], a_prod;
    uint8_t *z = malloc(1 * MIB), saved[64];

    assert_non_null(z);
    fill_text(f->data, 200 * KIB, 8);
    memcpy(H(f, SRC), f->data, 200 * KIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC, 0, 100 * KIB, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, true, false), ZIP_ST_OK);
    uint8_t *ctx_before = malloc(64 * KIB);

    assert_non_null(ctx_before);
    memcpy(ctx_before, H(f, CTX), 64 * KIB);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC + 100 * KIB, 0, 100 * KIB, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, false, true), ZIP_ST_OK);
    a_prod = PRODUCED(sqe);
    memcpy(z, H(f, DST), a_prod);
    memcpy(saved, H(f, CTX), sizeof(saved));
    /* Replay: the old context back, the same piece again. */
    memcpy(H(f, CTX), ctx_before, 64 * KIB);
    memset(H(f, DST), 0, a_prod);
    sqe_fill(sqe, ZIP_REQ_DEFLATE, ZIP_BUF_FLAT, SRC + 100 * KIB, 0, 100 * KIB, DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_COMPRESS, false, true), ZIP_ST_OK);
    assert_int_equal(PRODUCED(sqe), a_prod);
    assert_memory_equal(H(f, DST), z, a_prod);
    assert_memory_equal(H(f, CTX), saved, sizeof(saved));
    free(ctx_before);

    /* A zlib stream cut short with "no more input": 0x03; a flipped
     * trailer byte: 0x03. */
    size_t zl = zlib_deflate(ZIP_REQ_ZLIB, 6, f->data, 200 * KIB, z, 1 * MIB);

    memcpy(H(f, SRC), z, zl);
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 2, (uint32_t)(zl / 2), DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_DECOMPRESS, true, true), ZIP_ST_CORRUPT);
    H(f, SRC)[zl - 1] ^= 1;
    sqe_fill(sqe, ZIP_REQ_ZLIB, ZIP_BUF_FLAT, SRC, 2, (uint32_t)(zl - 2), DST, 0, 1 * MIB);
    assert_int_equal(stream_piece(f, sqe, ZIP_ALG_DECOMPRESS, true, false), ZIP_ST_CORRUPT);
    free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_compressed_output_of_every_format_inflates_with_zlib_at_every_size),
        T(test_zlib_made_streams_of_every_format_decompress_at_every_size),
        T(test_requests_over_8_mib_are_refused_with_0x04),
        T(test_exactly_8_mib_of_input_and_output_is_accepted),
        T(test_empty_input_compresses_to_a_complete_empty_stream),
        T(test_decompressing_empty_input_is_corrupt),
        T(test_incompressible_input_is_negative_compression_with_a_valid_stream),
        T(test_overlapping_source_and_destination_give_a_defined_status),
        T(test_overlapping_sgl_shapes_give_a_defined_status),
        T(test_a_stream_compressed_in_pieces_inflates_whole_with_zlib),
        T(test_a_stream_decompressed_in_pieces_gives_back_the_data),
        T(test_a_garbage_or_foreign_stream_context_is_0x01),
        T(test_a_replayed_piece_gives_the_same_bytes_and_bad_streams_are_0x03),
        T(test_window_field_limits_the_match_distance),
        T(test_compress_into_a_too_small_destination_is_0x0e),
        T(test_decompress_into_a_too_small_destination_is_0x0e),
        T(test_corrupt_body_and_bad_trailers_are_0x03),
        T(test_consumed_counts_body_and_trailer_but_not_bytes_after_the_stream),
        T(test_bad_sqe_type_request_type_buffer_type_window_and_stateful_bits_are_0x01),
        T(test_bad_arguments_are_einval_and_leave_the_sqe_alone),
        T(test_unmapped_source_is_a_dma_fault_and_writes_nothing),
        T(test_offset_past_the_end_of_a_flat_mapping_is_a_dma_fault),
        T(test_read_only_destination_is_a_dma_fault_and_stays_untouched),
        T(test_output_running_into_an_unmapped_hole_touches_nothing_outside_the_mapping),
        T(test_buffers_ending_at_a_guard_page_are_not_overrun),
        T(test_remote_buffers_go_through_bounce_buffers_in_both_directions),
        T(test_a_failing_remote_write_is_a_dma_fault),
        T(test_a_flat_buffer_spanning_two_mappings_is_read_and_written_whole),
        T(test_cancel_set_before_the_job_returns_ecanceled_and_touches_nothing),
        T(test_cancel_during_a_job_returns_ecanceled_and_the_job_reruns_later),
        T(test_sgl_with_many_entries_and_chained_sgls_round_trips_every_format),
        T(test_sgl_entries_of_one_byte_each_work_in_both_directions),
        T(test_sgl_offsets_count_data_bytes_across_entries),
        T(test_sgl_offset_past_its_data_or_a_source_chain_shorter_than_the_job_is_0x01_a_short_destination_is_less_space),
        T(test_sgl_chains_that_loop_are_0x01_and_ones_that_go_on_are_read_only_as_far_as_the_job),
        T(test_a_chain_of_more_than_256_sgls_is_0x01),
        T(test_sgl_entry_counts_over_capacity_and_unaligned_sgls_are_0x01),
        T(test_unreadable_sgl_or_sgl_data_is_a_dma_fault),
        T(test_an_sqe_filled_like_the_linux_driver_round_trips_with_its_tag),
        T(test_stats_count_jobs_errors_and_bytes),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
