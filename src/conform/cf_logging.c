/* conform/logging: DMA_LOGGING_START / STOP / REPORT. Argument rules are
 * the kernel's (vfio_main.c vfio_ioctl_device_feature_logging_start and
 * _report, Linux 6.1), the inline layout and "num_ranges 0 logs every
 * write" vfio-user's; the bitmap is one bit per page_size of the range,
 * in u64 words, and its bits past the range are zero (vfio-user.rst). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define SPEC_START "vfio_ioctl_device_feature_logging_start"
#define SPEC_REPORT "vfio_ioctl_device_feature_logging_report"
#define MB (1ull << 20)

struct range {
    uint64_t iova, length;
};

static void log_start(struct cf_ctx *x, uint64_t page, uint32_t num, const struct range *r,
                      size_t given, struct cf_res *res)
{
    size_t len = sizeof(struct vfu_feature_dma_logging_control) + given * sizeof(*r);
    uint8_t *d = calloc(1, len);
    struct vfu_feature_dma_logging_control c = {.page_size = page, .num_ranges = num};

    if (!d) {
        memset(res, 0, sizeof(*res));
        res->out = CF_NOSEND;
        return;
    }
    memcpy(d, &c, sizeof(c));
    if (given)
        memcpy(d + sizeof(c), r, given * sizeof(*r));
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_LOG_START, (uint32_t)(8 + len), d, len, res);
    free(d);
}

static void log_stop(struct cf_ctx *x, struct cf_res *res)
{
    cf_feature(x, VFU_FEATURE_SET | CF_FEAT_LOG_STOP, 8, NULL, 0, res);
}

static void log_report(struct cf_ctx *x, uint64_t iova, uint64_t len, uint64_t page,
                       uint32_t argsz, struct cf_res *res)
{
    struct vfu_feature_dma_logging_report r = {.iova = iova, .length = len, .page_size = page};
    cf_feature(x, VFU_FEATURE_GET | CF_FEAT_LOG_REPORT, argsz, &r, sizeof(r), res);
}

static uint32_t report_argsz(uint64_t len, uint64_t page)
{
    return (uint32_t)(8 + 24 + am_bitmap_words(len / page) * 8);
}

static void start_refused(struct cf_ctx *x, const char *name, uint64_t page, uint32_t num,
                          const struct range *r, size_t given, const char *rule)
{
    struct cf_res res;
    log_start(x, page, num, r, given, &res);
    cf_expect_refused(x, name, &res, rule);
    if (res.out == CF_OK) {
        struct cf_res s;
        log_stop(x, &s);
        cf_res_free(&s);
    }
    cf_res_free(&res);
}

/* REPORT over [iova, iova+len) at page: the bitmap's exact size, and no
 * bit set past the range. */
static void report_ok(struct cf_ctx *x, const char *name, uint64_t iova, uint64_t len,
                      uint64_t page)
{
    struct cf_res res;
    char n2[96];
    uint64_t bits = len / page, words = am_bitmap_words(bits);
    size_t want = 8 + 24 + words * 8;

    log_report(x, iova, len, page, report_argsz(len, page), &res);
    if (!cf_expect_ok(x, name, &res, "REPORT of a logged, page-aligned range")) {
        cf_res_free(&res);
        return;
    }
    snprintf(n2, sizeof(n2), "%s-bitmap-size", name);
    cf_check(x, n2, res.rep.len == want && am_le32(res.rep.payload) == want ? CF_PASS : CF_FAIL,
             "vfio-user.rst DMA_LOGGING_REPORT: the request, then one bit per page in u64s: "
             "%llu bits, %zu bytes expected, %zu sent, argsz %u",
             (unsigned long long)bits, want, res.rep.len,
             res.rep.len >= 4 ? am_le32(res.rep.payload) : 0);
    if (res.rep.len == want && bits % 64) {
        uint64_t last = am_le64(res.rep.payload + want - 8);
        snprintf(n2, sizeof(n2), "%s-bits-outside-zero", name);
        cf_check(x, n2, (last >> (bits % 64)) == 0 ? CF_PASS : CF_FAIL,
                 "vfio-user.rst: the bits outside of the requested range must be zero: last word "
                 "0x%llx, %llu bits used",
                 (unsigned long long)last, (unsigned long long)(bits % 64));
    }
    cf_res_free(&res);
}

void cf_group_logging(struct cf_ctx *x)
{
    const uint64_t B = x->dma_base, P = 4096;
    struct cf_res res;
    int fd;

    if (!x->dev.feat_log_start || !x->dev.feat_log_report || !x->dev.feat_log_stop) {
        cf_check(x, "all", CF_SKIP, "DMA_LOGGING_START/STOP/REPORT not all probed");
        return;
    }
    fd = cf_memfd(x, 4 * MB);
    if (fd < 0) {
        cf_check(x, "all", CF_SKIP, "memfd_create failed");
        return;
    }
    if (cf_dma_map(x, B, 4 * MB, fd, 0, VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, &res) != 0) {
        cf_res_free(&res);
        close(fd);
        cf_check(x, "map", CF_FAIL, "the guest RAM for the logged ranges could not be mapped");
        return;
    }
    cf_res_free(&res);

    {
        uint8_t d[8] = {0};
        cf_feature(x, VFU_FEATURE_SET | CF_FEAT_LOG_START, 16, d, sizeof(d), &res);
        cf_expect_refused(x, "start/short", &res,
                          "vfio-user.rst DMA_LOGGING_START: page_size, num_ranges, reserved (16 "
                          "bytes) before the ranges");
        cf_res_free(&res);
    }
    {
        struct range r[2] = {{B, MB}, {B + 2 * MB, MB}};
        start_refused(x, "start/fewer-ranges-than-num", P, 2, r, 1,
                      "num_ranges ranges follow inline (vfio-user); 1 of 2 sent");
        start_refused(x, "start/more-ranges-than-num", P, 1, r, 2,
                      "num_ranges ranges follow inline (vfio-user); 2 for 1");
        struct range u[1] = {{B + 0x800, MB}};
        start_refused(x, "start/unaligned-iova", P, 1, u, 1, SPEC_START ": IS_ALIGNED(iova, page_size)");
        struct range l[1] = {{B, MB + 0x800}};
        start_refused(x, "start/unaligned-length", P, 1, l, 1, SPEC_START ": IS_ALIGNED(length, page_size)");
        struct range o[2] = {{B, 2 * MB}, {B + MB, 2 * MB}};
        start_refused(x, "start/overlap", P, 2, o, 2, SPEC_START ": interval tree refuses overlaps");
        struct range same[2] = {{B, MB}, {B, MB}};
        start_refused(x, "start/duplicate", P, 2, same, 2, SPEC_START ": the same range twice overlaps");
        struct range w[1] = {{UINT64_MAX - P + 1, 2 * P}};
        start_refused(x, "start/wrap", P, 1, w, 1, SPEC_START ": check_add_overflow(iova, length)");
    }
    {
        struct range *many = calloc(257, sizeof(*many));
        if (many) {
            for (unsigned i = 0; i < 257; i++)
                many[i] = (struct range){B + i * 2 * P, P};
            start_refused(x, "start/too-many-ranges", P, 257, many, 257,
                          SPEC_START ": more than LOG_MAX_RANGES (PAGE_SIZE/16 = 256) is E2BIG");
            free(many);
        }
        start_refused(x, "start/huge-num-ranges", P, UINT32_MAX, NULL, 0,
                      "num_ranges 2^32-1 with no ranges sent");
    }
    {
        struct range r[2] = {{B, MB}, {B + 2 * MB, MB}};
        log_start(x, P, 2, r, 2, &res);
        if (cf_expect_ok(x, "start", &res, "two disjoint page-aligned ranges over mapped memory")) {
            size_t len = 8 + 16 + 2 * 16;
            uint64_t page = res.rep.len >= 16 ? am_le64(res.rep.payload + 8) : 0;
            bool same = res.rep.len == len &&
                        am_le32(res.rep.payload + 16) == 2 &&
                        memcmp(res.rep.payload + 24, r, sizeof(r)) == 0;
            cf_check(x, "start/reply", same && AM_IS_POW2(page) ? CF_PASS : CF_FAIL,
                     "vfio-user.rst: the response is the request, the page size it selected "
                     "excepted: %zu bytes (%zu expected), page_size %llu",
                     res.rep.len, len, (unsigned long long)page);
        }
        cf_res_free(&res);
        log_start(x, P, 2, r, 2, &res);
        cf_expect_refused(x, "start/twice", &res, "a second START before STOP (mlx5: EINVAL)");
        if (res.out == CF_OK) {
            struct cf_res s;
            log_stop(x, &s);
            cf_res_free(&s);
            log_start(x, P, 2, r, 2, &s);
            cf_res_free(&s);
        }
        cf_res_free(&res);
    }
    report_ok(x, "report/4k", B, MB, P);
    report_ok(x, "report/8k", B, MB, 2 * P);
    report_ok(x, "report/64k", B, MB, 16 * P);
    report_ok(x, "report/sub-range", B + 64 * 1024, 128 * 1024, P);
    report_ok(x, "report/5-pages", B + 2 * MB, 5 * P, P);
    report_ok(x, "report/second-range", B + 2 * MB, MB, P);
    {
        struct { const char *name; uint64_t iova, len, page; const char *rule; } bad[] = {
            {"report/unaligned-iova", B + 0x800, MB, P, "iova not aligned to page_size"},
            {"report/unaligned-length", B, MB + 0x800, P, "length not aligned to page_size"},
            {"report/page-not-pow2", B, 3 * MB, 3 * P, SPEC_REPORT ": is_power_of_2(page_size)"},
            {"report/page-below-4k", B, MB, 2048, SPEC_REPORT ": page_size >= SZ_4K"},
            {"report/page-0", B, MB, 0, SPEC_REPORT ": page_size 0"},
            {"report/length-0", B, 0, P, "an empty range"},
            {"report/wrap", UINT64_MAX - P + 1, 2 * P, P, "iova + length wraps"},
            {"report/huge-bitmap", 0, 1ull << 62, P, "a bitmap far above max_data_xfer_size"},
        };
        for (size_t i = 0; i < AM_ARRAY_SIZE(bad); i++) {
            uint64_t pg = bad[i].page ? bad[i].page : P;
            log_report(x, bad[i].iova, bad[i].len, bad[i].page,
                       bad[i].len / pg > (64u << 20) ? UINT32_MAX
                                                     : report_argsz(bad[i].len, pg),
                       &res);
            cf_expect_refused(x, bad[i].name, &res, bad[i].rule);
            cf_res_free(&res);
        }
    }
    log_report(x, B, MB, P, 8 + 24, &res);
    cf_expect_refused(x, "report/argsz-without-bitmap", &res,
                      "argsz leaves no room for the bitmap (the reply may not exceed argsz)");
    cf_res_free(&res);
    {
        uint8_t d[16] = {0};
        cf_feature(x, VFU_FEATURE_GET | CF_FEAT_LOG_REPORT, 64, d, sizeof(d), &res);
        cf_expect_refused(x, "report/short", &res, "REPORT request of 16 bytes, 24 needed");
        cf_res_free(&res);
        struct vfu_feature_dma_logging_report r = {.iova = B, .length = MB, .page_size = P};
        cf_feature(x, VFU_FEATURE_SET | CF_FEAT_LOG_REPORT, 64, &r, sizeof(r), &res);
        cf_expect_refused(x, "report/set", &res, "DMA_LOGGING_REPORT is a GET");
        cf_res_free(&res);
    }
    log_stop(x, &res);
    if (cf_expect_ok(x, "stop", &res, "DMA_LOGGING_STOP after START"))
        cf_check(x, "stop/reply", res.rep.len == 8 ? CF_PASS : CF_FAIL,
                 "vfio-user.rst DEVICE_FEATURE: a SET's reply is the request (8 bytes): %zu",
                 res.rep.len);
    cf_res_free(&res);
    log_report(x, B, MB, P, report_argsz(MB, P), &res);
    cf_expect_refused(x, "report/after-stop", &res,
                      "vfio-user.rst: REPORT is only valid while logging is started");
    cf_res_free(&res);
    log_start(x, P, 0, NULL, 0, &res);
    cf_expect_ok(x, "start/all-writes", &res,
                 "vfio-user.rst: num_ranges 0 indicates that all writes should be logged");
    if (res.out == CF_OK) {
        cf_res_free(&res);
        report_ok(x, "report/all-writes", B, MB, P);
        log_stop(x, &res);
        cf_expect_ok(x, "stop/all-writes", &res, "STOP of the log-everything form");
    }
    cf_res_free(&res);
    cf_dma_unmap(x, B, 4 * MB, 0, &res);
    cf_res_free(&res);
    close(fd);
}
