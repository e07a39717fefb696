/* conform/dma: DMA_MAP / DMA_UNMAP with real memfds. The address rules are
 * vfio_iommu_type1's (vfio_dma_do_map / vfio_dma_do_unmap), which QEMU's
 * client assumes; the spec adds EEXIST for a map over an existing one and
 * "release all references before replying" for an unmap. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "conform/cf_int.h"

#define PG 4096ull
#define SPEC_MAP "vfio-user.rst DMA_MAP"
#define SPEC_UNMAP "vfio-user.rst DMA_UNMAP"
#define TYPE1 "vfio_iommu_type1 vfio_dma_do_map"

enum expect { E_OK, E_REFUSED, E_EEXIST, E_ANSWER };

static bool map_chk(struct cf_ctx *x, const char *name, uint64_t iova, uint64_t size, int fd,
                    uint64_t off, uint32_t flags, enum expect e, const char *rule)
{
    struct cf_res res;
    bool ok;

    cf_dma_map(x, iova, size, fd, off, flags, &res);
    switch (e) {
    case E_OK:
        ok = cf_expect_ok(x, name, &res, rule);
        break;
    case E_EEXIST:
        ok = cf_expect_errno(x, name, &res, EEXIST, rule);
        break;
    case E_REFUSED:
        ok = cf_expect_refused(x, name, &res, rule);
        break;
    default:
        ok = cf_expect_answer(x, name, &res, rule);
    }
    cf_res_free(&res);
    return ok;
}

static bool unmap_chk(struct cf_ctx *x, const char *name, uint64_t iova, uint64_t size,
                      uint32_t flags, enum expect e, const char *rule)
{
    struct cf_res res;
    bool ok;

    cf_dma_unmap(x, iova, size, flags, &res);
    ok = e == E_OK ? cf_expect_ok(x, name, &res, rule)
         : e == E_REFUSED ? cf_expect_refused(x, name, &res, rule)
                          : cf_expect_answer(x, name, &res, rule);
    cf_res_free(&res);
    return ok;
}

/* Whether the server process (or a child of it) maps a file whose name
 * contains tag: /proc/PID/maps. -1 when it cannot be told. */
static int server_maps(const struct cf_ctx *x, const char *tag)
{
    char path[96], line[512];
    pid_t pids[8];
    unsigned n = 0;
    FILE *f;
    int found = -1;

    if (!x->srv.pid)
        return -1;
    pids[n++] = x->srv.pid;
    /* sh -c may have forked the server instead of exec'ing it. */
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)x->srv.pid, (int)x->srv.pid);
    f = fopen(path, "r");
    if (f) {
        int c;
        while (n < AM_ARRAY_SIZE(pids) && fscanf(f, "%d", &c) == 1)
            pids[n++] = c;
        fclose(f);
    }
    for (unsigned i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/proc/%d/maps", (int)pids[i]);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (found < 0)
            found = 0;
        while (fgets(line, sizeof(line), f))
            if (strstr(line, tag))
                found = 1;
        fclose(f);
    }
    return found;
}

static void fd_refused(struct cf_ctx *x, const char *name, uint64_t iova, unsigned nfds,
                       const char *rule)
{
    int p[4][2], wr[4];
    struct vfu_dma_map m = {.argsz = sizeof(m), .flags = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE,
                            .offset = 0, .addr = iova, .size = PG};
    struct cf_res res;
    unsigned made = 0, rel = 0;
    char n2[96];

    for (; made < nfds; made++) {
        if (cf_pipe(p[made]) != 0)
            break;
        wr[made] = p[made][1];
    }
    cf_call(x, VFU_CMD_DMA_MAP, &m, sizeof(m), wr, made, &res);
    for (unsigned i = 0; i < made; i++)
        close(p[i][1]);
    cf_expect_refused(x, name, &res, rule);
    if (res.out == CF_OK)
        unmap_chk(x, "cleanup", iova, PG, 0, E_ANSWER, "undo");
    cf_res_free(&res);
    for (unsigned i = 0; i < made; i++) {
        rel += cf_fd_released(p[i][0], 2000);
        close(p[i][0]);
    }
    snprintf(n2, sizeof(n2), "%s-closed", name);
    cf_check(x, n2, rel == made ? CF_PASS : CF_FAIL,
             "the descriptors of a refused DMA_MAP are closed: %u of %u", rel, made);
}

static void group_max_maps(struct cf_ctx *x, int fd)
{
    static const char j[] = "{\"capabilities\":{\"max_msg_fds\":8,\"max_dma_maps\":4}}";
    uint8_t buf[sizeof(struct vfu_version) + sizeof(j)] = {0};
    struct cf_res res;
    uint64_t limit = 0;
    char name[64];

    cf_conn_close(&x->conn);
    if (cf_conn_open(&x->conn, x->opts->socket, x->timeout_ms) != 0)
        return;
    memcpy(buf + sizeof(struct vfu_version), j, sizeof(j));
    cf_call(x, VFU_CMD_VERSION, buf, sizeof(buf), NULL, 0, &res);
    if (res.out == CF_OK && res.rep.len > 4 && res.rep.payload[res.rep.len - 1] == 0) {
        const char *p = strstr((const char *)res.rep.payload + 4, "\"max_dma_maps\"");
        if (p && (p = strchr(p, ':')))
            limit = strtoull(p + 1, NULL, 10);
    }
    cf_res_free(&res);
    if (!limit || limit > 16) {
        cf_check(x, "max-dma-maps", CF_SKIP,
                 "the VERSION reply states no max_dma_maps <= 16 for a proposal of 4");
        cf_session(x);
        return;
    }
    for (uint64_t i = 0; i < limit; i++) {
        snprintf(name, sizeof(name), "max-dma-maps/map-%llu", (unsigned long long)i);
        map_chk(x, name, x->dma_base + (0x100 + i) * 0x100000ull, PG, fd, 0,
                VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, E_OK,
                "a map within the negotiated max_dma_maps");
    }
    map_chk(x, "max-dma-maps/one-more", x->dma_base + 0x200 * 0x100000ull, PG, fd, 0,
            VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE, E_REFUSED,
            "vfio-user.rst VERSION: max_dma_maps windows valid simultaneously, no more");
    cf_session(x);
}

void cf_group_dma(struct cf_ctx *x)
{
    const uint32_t rw = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;
    const uint64_t B = x->dma_base, B2 = B + 0x1000000ull, B3 = B + 0x2000000ull;
    char tag[64];
    int fd = cf_memfd(x, 1u << 20), small;
    struct cf_res res;

    if (fd < 0) {
        cf_check(x, "memfd", CF_SKIP, "memfd_create: %s", strerror(-fd));
        return;
    }
    snprintf(tag, sizeof(tag), "accmig-conform-%d-%u", (int)getpid(), x->memfd_seq - 1);

    /* Overlap rules around [B, B+16K). */
    cf_dma_map(x, B, 4 * PG, fd, 0, rw, &res);
    if (cf_expect_ok(x, "map", &res, SPEC_MAP ": 4 pages of a memfd, read/write"))
        cf_check(x, "map-reply-empty", res.rep.len == 0 ? CF_PASS : CF_FAIL,
                 SPEC_MAP ": \"There is no payload in the reply message\": %zu bytes",
                 res.rep.len);
    cf_res_free(&res);
    {
        int m = server_maps(x, tag);
        if (m < 0)
            cf_check(x, "mapped-by-server", CF_SKIP, "no server pid (--server-cmd) to look at");
        else
            cf_check(x, "mapped-by-server", m ? CF_PASS : CF_SKIP,
                     m ? "the server mmaps the memfd it was given (/proc/PID/maps)"
                       : "the server does not mmap the fd (reference checks skipped)");
    }
    map_chk(x, "map-same", B, 4 * PG, fd, 0, rw, E_EEXIST, SPEC_MAP ": a map over an existing one");
    map_chk(x, "map-overlap-head", B - PG, 2 * PG, fd, 0, rw, E_EEXIST, SPEC_MAP ": overlaps the start");
    map_chk(x, "map-overlap-tail", B + 3 * PG, 2 * PG, fd, 0, rw, E_EEXIST, SPEC_MAP ": overlaps the end");
    map_chk(x, "map-inside", B + PG, PG, fd, PG, rw, E_EEXIST, SPEC_MAP ": inside an existing one");
    map_chk(x, "map-containing", B - PG, 6 * PG, fd, 0, rw, E_EEXIST, SPEC_MAP ": contains an existing one");
    map_chk(x, "map-adjacent", B + 4 * PG, PG, fd, 4 * PG, rw, E_OK,
            "a map that touches an existing one without overlap");
    /* Arguments (type1: !prot || !size || unaligned iova/size/vaddr is EINVAL). */
    map_chk(x, "map-unaligned-address", B2 + 0x200, PG, fd, 0, rw, E_REFUSED, TYPE1 ": iova not page aligned");
    map_chk(x, "map-unaligned-size", B2, PG + 0x800, fd, 0, rw, E_REFUSED, TYPE1 ": size not page aligned");
    map_chk(x, "map-unaligned-offset", B2, PG, fd, 0x200, rw, E_REFUSED, "mmap: offset not page aligned");
    map_chk(x, "map-size-0", B2, 0, fd, 0, rw, E_REFUSED, TYPE1 ": size 0");
    map_chk(x, "map-wraps", UINT64_MAX - PG + 1, 2 * PG, fd, 0, rw, E_REFUSED, TYPE1 ": iova + size wraps");
    map_chk(x, "map-wraps-far", 0x8000000000000000ull, 0x8000000000001000ull, fd, 0, rw, E_REFUSED,
            TYPE1 ": iova + size wraps (large size)");
    map_chk(x, "map-no-permission", B2, PG, fd, 0, 0, E_REFUSED, TYPE1 ": neither read nor write");
    map_chk(x, "map-unknown-flags", B2, PG, fd, 0, rw | (1u << 7), E_REFUSED, "flags beyond read/write");
    {
        struct vfu_dma_map m = {.argsz = 16, .flags = rw, .addr = B2, .size = PG};
        cf_call(x, VFU_CMD_DMA_MAP, &m, sizeof(m), &fd, 1, &res);
        cf_expect_refused(x, "map-argsz-small", &res, SPEC_MAP ": argsz is the structure's size (32)");
        cf_res_free(&res);
        cf_call(x, VFU_CMD_DMA_MAP, &m, 24, &fd, 1, &res);
        cf_expect_refused(x, "map-short", &res, SPEC_MAP ": a 24-byte payload");
        cf_res_free(&res);
    }
    fd_refused(x, "map-pipe-fd", B2, 1, "a descriptor that cannot be mmap'd");
    fd_refused(x, "map-two-fds", B2, 2, SPEC_MAP ": one fd, or none");
    small = cf_memfd(x, 4 * PG);
    if (x->opts->accmig && small >= 0)
        map_chk(x, "map-beyond-file", B2, 16 * PG, small, 0, rw, E_REFUSED,
                "accmig (docs/usage.md): a range beyond the end of the file is ENXIO");
    if (small >= 0)
        close(small);
    {
        cf_dma_map(x, B2 + 0x100000ull, PG, -1, 0, rw, &res);
        cf_expect_answer(x, "map-without-fd", &res,
                         SPEC_MAP ": without an fd the server uses DMA_READ/WRITE (or refuses)");
        if (res.out == CF_OK)
            unmap_chk(x, "unmap-without-fd", B2 + 0x100000ull, PG, 0, E_OK, "undo the fd-less map");
        cf_res_free(&res);
    }

    /* Unmaps. */
    {
        struct vfu_dma_unmap u = {.argsz = sizeof(u), .addr = B, .size = 4 * PG};
        cf_call(x, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, &res);
        if (cf_expect_ok(x, "unmap-exact", &res, SPEC_UNMAP ": exactly a previous mapping"))
            cf_check(x, "unmap-reply-entry",
                     res.rep.len == sizeof(u) && memcmp(res.rep.payload, &u, sizeof(u)) == 0
                         ? CF_PASS
                         : CF_FAIL,
                     SPEC_UNMAP ": \"The server responds with the original DMA entry\": %zu bytes%s",
                     res.rep.len,
                     res.rep.len == sizeof(u) && memcmp(res.rep.payload, &u, sizeof(u))
                         ? ", fields differ"
                         : "");
        cf_res_free(&res);
    }
    {
        int m = server_maps(x, tag);
        /* B + 4 pages (the adjacent map) still uses the memfd. */
        unmap_chk(x, "unmap-adjacent", B + 4 * PG, PG, 0, E_OK, SPEC_UNMAP ": the adjacent map");
        int after = server_maps(x, tag);
        if (m == 1)
            cf_check(x, "unmap-drops-references", after == 0 ? CF_PASS : CF_FAIL,
                     SPEC_UNMAP ": \"the server must release all references to that DMA region "
                                "before replying\": %s",
                     after == 0 ? "no mapping of the memfd left" : "the memfd is still mapped");
    }
    map_chk(x, "map-after-unmap", B, 4 * PG, fd, 0, rw, E_OK, "the unmapped range can be mapped again");
    /* A range inside one mapping: type1 v2 refuses to bisect a mapping. */
    unmap_chk(x, "unmap-bisect", B + PG, PG, 0, E_REFUSED,
              "vfio_iommu_type1 (v2): an unmap may not bisect a mapping");
    map_chk(x, "unmap-bisect-kept", B, PG, fd, 0, rw, E_EEXIST,
            "a refused unmap removed nothing");
    unmap_chk(x, "unmap-straddle", B - PG, 2 * PG, 0, E_REFUSED,
              "vfio_iommu_type1: a mapping that straddles the range's edge");
    unmap_chk(x, "unmap-nothing", B + 0x40000000ull, 4 * PG, 0, E_ANSWER,
              "a range with no mapping: type1 succeeds, the spec's exact-match text refuses");
    unmap_chk(x, "unmap-size-0", B, 0, 0, E_REFUSED, "vfio_dma_do_unmap: size 0");
    unmap_chk(x, "unmap-unaligned", B + 0x200, PG, 0, E_REFUSED, "vfio_dma_do_unmap: unaligned");
    unmap_chk(x, "unmap-beyond-2^64", UINT64_MAX - PG + 1, 2 * PG, 0, E_REFUSED,
              "vfio_dma_do_unmap: iova + size - 1 wraps");
    unmap_chk(x, "unmap-unknown-flags", B, 4 * PG, 1u << 6, E_REFUSED, "flags beyond the defined ones");
    unmap_chk(x, "unmap-all-with-range", B, 4 * PG, VFU_DMA_UNMAP_FLAG_ALL, E_REFUSED,
              "vfio.h VFIO_DMA_UNMAP_FLAG_ALL: iova and size must be 0");
    {
        struct vfu_dma_unmap u = {.argsz = 16, .addr = B, .size = 4 * PG};
        cf_call(x, VFU_CMD_DMA_UNMAP, &u, sizeof(u), NULL, 0, &res);
        cf_expect_refused(x, "unmap-argsz-small", &res, SPEC_UNMAP ": argsz below the 24-byte entry");
        cf_res_free(&res);
        cf_call(x, VFU_CMD_DMA_UNMAP, &u, 16, NULL, 0, &res);
        cf_expect_refused(x, "unmap-short", &res, SPEC_UNMAP ": a 16-byte payload");
        cf_res_free(&res);
    }
    unmap_chk(x, "unmap-whole", B, 4 * PG, 0, E_OK, "undo");
    /* QEMU's ranges: one unmap over several maps; halves up to 2^64. */
    map_chk(x, "several/map-1", B2, 4 * PG, fd, 0, rw, E_OK, "first of two maps");
    map_chk(x, "several/map-2", B2 + 4 * PG, 4 * PG, fd, 4 * PG, rw, E_OK, "second of two maps");
    unmap_chk(x, "several/unmap", B2, 8 * PG, 0, E_OK,
              "QEMU (hw/vfio-user/container.c) unmaps whole sections: one range over two maps");
    map_chk(x, "several/gone", B2, 8 * PG, fd, 0, rw, E_OK, "both maps were removed");
    map_chk(x, "qemu-reboot/map", B3, 4 * PG, fd, 0, rw, E_OK, "a map in the upper range");
    unmap_chk(x, "qemu-reboot/lower-half", 0, 1ull << 63, 0, E_OK,
              "QEMU's reset unmaps [0, 2^63) (power-of-two pieces)");
    unmap_chk(x, "qemu-reboot/upper-half", 1ull << 63, 1ull << 63, 0, E_OK,
              "and [2^63, 2^64): an end of exactly 2^64 is not a wrap");
    map_chk(x, "qemu-reboot/map-again", B3, 4 * PG, fd, 0, rw, E_OK,
            "after the halves nothing is mapped (a reboot maps RAM again)");
    map_chk(x, "qemu-reboot/map-again-2", B2, 8 * PG, fd, 0, rw, E_OK, "and everywhere else");
    map_chk(x, "unmap-all/map", B, 4 * PG, fd, 0, rw, E_OK, "one more map");
    unmap_chk(x, "unmap-all", 0, 0, VFU_DMA_UNMAP_FLAG_ALL, E_OK,
              "vfio.h VFIO_DMA_UNMAP_FLAG_ALL unmaps everything");
    map_chk(x, "unmap-all/gone-1", B, 4 * PG, fd, 0, rw, E_OK, "UNMAP_ALL removed the first");
    map_chk(x, "unmap-all/gone-2", B3, 4 * PG, fd, 0, rw, E_OK, "and the second");
    unmap_chk(x, "unmap-all/again", 0, 0, VFU_DMA_UNMAP_FLAG_ALL, E_OK, "cleanup");
    group_max_maps(x, fd);
    close(fd);
}
