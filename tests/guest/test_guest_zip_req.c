/* Unit tests of the guest driver's ZIP helpers: SQE filling, zlib/gzip
 * headers, hardware SGL chains, and the CPU dirty log marking. No device. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest/guest.h"

static void test_sqe_build_places_every_field_where_the_spec_says(void **state)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct guest_zip_req r = {
        .type = ZIP_REQ_GZIP, .buf_type = ZIP_BUF_SGL, .src = 0x123456789aull, .dst = 0xabcdef0123ull,
        .in_off = 7, .in_len = 1000, .out_off = 10, .dest_avail = 5000, .window = 3,
        .tag = 0x1122334455667788ull,
    };
    (void)state;

    memset(sqe, 0xff, sizeof(sqe));
    assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
    assert_int_equal(sqe[ZIP_SQE_CONSUMED], 0);
    assert_int_equal(sqe[ZIP_SQE_PRODUCED], 0);
    assert_int_equal(sqe[ZIP_SQE_DW3], 0);
    assert_int_equal(sqe[ZIP_SQE_INPUT_LEN], 1000);
    assert_int_equal(sqe[ZIP_SQE_DEST_AVAIL], 5000);
    assert_int_equal(sqe[ZIP_SQE_DW7], 7u | 3u << 28);
    assert_int_equal(sqe[ZIP_SQE_DW8], 10);
    assert_int_equal(sqe[ZIP_SQE_DW9], 3u | 1u << 8 | 3u << 12);
    assert_int_equal(sqe[ZIP_SQE_SRC_ADDR_L], 0x3456789a);
    assert_int_equal(sqe[ZIP_SQE_SRC_ADDR_H], 0x12);
    assert_int_equal(sqe[ZIP_SQE_DST_ADDR_L], 0xcdef0123);
    assert_int_equal(sqe[ZIP_SQE_DST_ADDR_H], 0xab);
    assert_int_equal(sqe[ZIP_SQE_TAG_L], 0x55667788);
    assert_int_equal(sqe[ZIP_SQE_TAG_H], 0x11223344);
    assert_int_equal(sqe[ZIP_SQE_CTX_ADDR_L], 0);
}

static void test_sqe_build_refuses_bad_types_windows_and_offsets(void **state)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct guest_zip_req ok = {.type = ZIP_REQ_DEFLATE, .buf_type = ZIP_BUF_FLAT}, r;
    (void)state;

    r = ok;
    r.type = 0;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r = ok;
    r.type = 4;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r = ok;
    r.buf_type = 2;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r = ok;
    r.window = 5;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r = ok;
    r.in_off = 1u << 24;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r = ok;
    r.out_off = 1u << 24;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    assert_int_equal(guest_zip_sqe_build(NULL, &ok), -EINVAL);
    assert_int_equal(guest_zip_sqe_build(sqe, &ok), 0);
}

static void test_a_stream_piece_carries_the_stream_bits_and_its_context(void **state)
{
    uint32_t sqe[ZIP_SQE_DWORDS];
    struct guest_zip_req r = {.type = ZIP_REQ_ZLIB, .buf_type = ZIP_BUF_FLAT, .in_len = 100,
                              .stream_ctx = 0x123450000ull};
    static const unsigned flags[] = {GUEST_ZIP_STREAM_FIRST, 0, GUEST_ZIP_STREAM_LAST,
                                     GUEST_ZIP_STREAM_FIRST | GUEST_ZIP_STREAM_LAST};
    (void)state;

    for (size_t i = 0; i < 4; i++) {
        r.stream_flags = flags[i];
        assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
        assert_true(sqe[ZIP_SQE_DW7] & ZIP_DW7_STATEFUL);
        assert_int_equal(!!(sqe[ZIP_SQE_DW7] & ZIP_DW7_NEW_STREAM),
                         !!(flags[i] & GUEST_ZIP_STREAM_FIRST));
        assert_int_equal(!!(sqe[ZIP_SQE_DW7] & ZIP_DW7_FLUSH), !!(flags[i] & GUEST_ZIP_STREAM_LAST));
        assert_int_equal(sqe[ZIP_SQE_DW7] >> ZIP_DW7_SQE_TYPE_SHIFT, ZIP_SQE_TYPE_V3);
        assert_int_equal(sqe[ZIP_SQE_CTX_ADDR_L], 0x23450000u);
        assert_int_equal(sqe[ZIP_SQE_CTX_ADDR_H], 0x1u);
    }
    /* A stateless job has none of the stream bits. */
    r.stream_ctx = 0;
    r.stream_flags = 0;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), 0);
    assert_int_equal(sqe[ZIP_SQE_DW7] & ZIP_DW7_STATEFUL_BITS, 0);
    /* Flags without a context, unknown flags, a context that wraps. */
    r.stream_flags = GUEST_ZIP_STREAM_FIRST;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r.stream_ctx = 0x10000;
    r.stream_flags = 0x4;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
    r.stream_flags = 0;
    r.stream_ctx = UINT64_MAX - 0x1000;
    assert_int_equal(guest_zip_sqe_build(sqe, &r), -EINVAL);
}

static void test_header_write_gives_the_6_1_driver_headers(void **state)
{
    uint8_t b[16];
    static const uint8_t gz[10] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03};
    (void)state;

    assert_int_equal(guest_zip_header_write(ZIP_REQ_DEFLATE, b, sizeof(b)), 0);
    assert_int_equal(guest_zip_header_write(ZIP_REQ_ZLIB, b, sizeof(b)), 2);
    assert_int_equal(b[0], 0x78);
    assert_int_equal(b[1], 0x9c);
    assert_int_equal(guest_zip_header_write(ZIP_REQ_GZIP, b, sizeof(b)), 10);
    assert_memory_equal(b, gz, 10);
    assert_int_equal(guest_zip_header_write(ZIP_REQ_GZIP, b, 9), -ENOSPC);
    assert_int_equal(guest_zip_header_write(7, b, sizeof(b)), -EINVAL);
}

static void test_header_parse_skips_every_optional_gzip_field(void **state)
{
    uint8_t b[64] = {0x1f, 0x8b, 0x08, 0x02 | 0x04 | 0x08 | 0x10, 0, 0, 0, 0, 0, 0x03};
    size_t pos = 10, len;
    (void)state;

    b[pos++] = 3; /* XLEN = 3 */
    b[pos++] = 0;
    pos += 3;
    memcpy(b + pos, "name", 5);
    pos += 5;
    memcpy(b + pos, "comment", 8);
    pos += 8;
    pos += 2; /* header CRC */
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_GZIP, b, pos + 5, &len), 0);
    assert_int_equal(len, pos);
    /* Every truncation of it is too short, never a wrong length. */
    for (size_t cut = 0; cut < pos; cut++)
        assert_int_equal(guest_zip_header_parse(ZIP_REQ_GZIP, b, cut, &len), -EMSGSIZE);
}

static void test_header_parse_refuses_malformed_headers(void **state)
{
    uint8_t gz[10] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03};
    uint8_t zl[2] = {0x78, 0x9c};
    size_t len = 99;
    (void)state;

    assert_int_equal(guest_zip_header_parse(ZIP_REQ_GZIP, gz, sizeof(gz), &len), 0);
    assert_int_equal(len, 10);
    gz[2] = 7; /* not deflate */
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_GZIP, gz, sizeof(gz), &len), -EINVAL);
    gz[2] = 8;
    gz[3] = 0x20; /* reserved flag */
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_GZIP, gz, sizeof(gz), &len), -EINVAL);
    gz[3] = 0;
    gz[0] = 0x1e;
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_GZIP, gz, sizeof(gz), &len), -EINVAL);
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_ZLIB, zl, 2, &len), 0);
    assert_int_equal(len, 2);
    zl[1] = 0x9d; /* FCHECK wrong */
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_ZLIB, zl, 2, &len), -EINVAL);
    zl[0] = 0x78;
    zl[1] = 0xbb; /* 0x78bb % 31 == 0 but FDICT set */
    assert_int_equal((0x78 << 8 | 0xbb) % 31, 0);
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_ZLIB, zl, 2, &len), -EINVAL);
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_ZLIB, zl, 1, &len), -EMSGSIZE);
    assert_int_equal(guest_zip_header_parse(ZIP_REQ_DEFLATE, NULL, 0, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(guest_zip_header_parse(9, zl, 2, &len), -EINVAL);
}

struct ram_fixture {
    struct guest_ram ram;
    uint64_t dirty[4];
};

static int ram_setup(void **state)
{
    struct ram_fixture *f = calloc(1, sizeof(*f));

    f->ram.size = 256u << 10; /* 64 pages */
    f->ram.host = aligned_alloc(4096, f->ram.size);
    memset(f->ram.host, 0xee, f->ram.size);
    f->ram.cpu_dirty = f->dirty;
    *state = f;
    return 0;
}

static int ram_teardown(void **state)
{
    struct ram_fixture *f = *state;

    free(f->ram.host);
    free(f);
    return 0;
}

static void test_sgl_chain_covers_the_data_exactly_and_links_sgls(void **state)
{
    struct ram_fixture *f = *state;
    const uint64_t sgl = 0x1000, data = 0x10000, len = 10000;
    uint64_t seen = 0, gpa = sgl;
    unsigned sgls = 0;

    assert_int_equal(guest_sgl_size(len, 1000, 3), 4 * (64 + 3 * 32 + 32));
    assert_int_equal(guest_sgl_build(&f->ram, sgl, 0x4000, data, len, 1000, 3), 0);
    while (gpa) {
        const struct zip_sgl_hdr *h = guest_ram_ptr(&f->ram, gpa);
        const struct zip_sgl_entry *e = (const void *)(h + 1);
        assert_int_equal(gpa % ZIP_SGL_ALIGN, 0);
        assert_int_equal(h->entry_length_in_sgl, 3);
        assert_true(h->entry_sum_in_sgl >= 1 && h->entry_sum_in_sgl <= 3);
        for (unsigned i = 0; i < h->entry_sum_in_sgl; i++) {
            assert_int_equal(e[i].buf, data + seen);
            seen += e[i].len;
        }
        gpa = h->next_dma;
        sgls++;
    }
    assert_int_equal(seen, len);
    assert_int_equal(sgls, 4); /* 10 pieces in SGLs of 3 */
}

static void test_sgl_build_refuses_what_does_not_fit(void **state)
{
    struct ram_fixture *f = *state;
    (void)state;

    assert_int_equal(guest_sgl_build(&f->ram, 0x1000, 100, 0x10000, 10000, 1000, 3), -ENOSPC);
    assert_int_equal(guest_sgl_build(&f->ram, 0x1008, 0x4000, 0x10000, 100, 100, 3), -EINVAL);
    assert_int_equal(guest_sgl_build(&f->ram, 0x1000, 0x4000, 0x10000, 100, 0, 3), -EINVAL);
    assert_int_equal(guest_sgl_build(&f->ram, 0x1000, 0x4000, 0x10000, 100, 100, 0), -EINVAL);
    assert_int_equal(guest_sgl_build(&f->ram, 0x1000, 0x4000, 0x10000, 100, 100, 256), -EINVAL);
    /* data past the end of RAM */
    assert_int_equal(guest_sgl_build(&f->ram, 0x1000, 0x4000, f->ram.size - 10, 100, 100, 3), -EINVAL);
    /* a chain longer than ZIP_SGL_MAX_CHAIN SGLs */
    assert_int_equal(guest_sgl_build(&f->ram, 0x1000, 0x30000, 0x10000, 300, 1, 1), -ENOSPC);
    assert_int_equal(guest_sgl_size(100, 0, 3), 0);
}

static void test_mark_dirty_sets_the_pages_written_and_clips_at_the_end(void **state)
{
    struct ram_fixture *f = *state;

    memset(f->dirty, 0, sizeof(f->dirty));
    guest_ram_mark_dirty(&f->ram, 4095, 2); /* pages 0 and 1 */
    guest_ram_mark_dirty(&f->ram, 10 * 4096, 1);
    guest_ram_mark_dirty(&f->ram, 63 * 4096 + 5, 1 << 20); /* clipped to page 63 */
    guest_ram_mark_dirty(&f->ram, f->ram.size, 4096);     /* outside: nothing */
    guest_ram_mark_dirty(&f->ram, 20 * 4096, 0);          /* empty: nothing */
    assert_int_equal(f->dirty[0], 1ull << 0 | 1ull << 1 | 1ull << 10 | 1ull << 63);
    assert_int_equal(f->dirty[1], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqe_build_places_every_field_where_the_spec_says),
        cmocka_unit_test(test_sqe_build_refuses_bad_types_windows_and_offsets),
        cmocka_unit_test(test_a_stream_piece_carries_the_stream_bits_and_its_context),
        cmocka_unit_test(test_header_write_gives_the_6_1_driver_headers),
        cmocka_unit_test(test_header_parse_skips_every_optional_gzip_field),
        cmocka_unit_test(test_header_parse_refuses_malformed_headers),
        cmocka_unit_test_setup_teardown(test_sgl_chain_covers_the_data_exactly_and_links_sgls,
                                        ram_setup, ram_teardown),
        cmocka_unit_test_setup_teardown(test_sgl_build_refuses_what_does_not_fit, ram_setup,
                                        ram_teardown),
        cmocka_unit_test_setup_teardown(test_mark_dirty_sets_the_pages_written_and_clips_at_the_end,
                                        ram_setup, ram_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
