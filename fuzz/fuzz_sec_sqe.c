/* libFuzzer target: the SEC engine on one BD (sec_engine_run).
 *
 * Input: byte 0 steers, bytes 1..128 are the BD, the rest (up to 64 KiB) is
 * guest memory, mapped read-write at RAM_IOVA. Steering bit 0: fold every
 * address field of the BD (source, destination, keys, IVs, MAC) into the
 * mapped window, so mutations reach the algorithms and the SGL walk instead
 * of stopping at a DMA fault. Bit 1: cancel after a few polls (the
 * cancellation paths). Whatever the input, the engine must return 0 with
 * done set, or -ECANCELED with the BD unchanged, and never crash or touch
 * memory outside the mapping (ASan). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "iommu/iommu.h"
#include "sec/sec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_IOVA UINT64_C(0x100000)
#define RAM_MAX (64u << 10)

struct ctl {
    struct iommu_domain *d;
    unsigned polls, cancel_after;
};

static int ctl_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    struct ctl *c = opaque;

    if (len > SEC_CHUNK)
        abort(); /* the contract: one write moves at most SEC_CHUNK */
    return iommu_dma_write(c->d, iova, buf, len);
}

static bool ctl_cancelled(void *opaque)
{
    struct ctl *c = opaque;

    return c->polls++ >= c->cancel_after;
}

static const struct sec_job_ops ctl_ops = {.write = ctl_write, .cancelled = ctl_cancelled};

static void fold(uint32_t *bd, unsigned lo, uint64_t ram_size)
{
    uint64_t a = (uint64_t)bd[lo + 1] << 32 | bd[lo];

    a = RAM_IOVA + a % ram_size;
    bd[lo] = (uint32_t)a;
    bd[lo + 1] = (uint32_t)(a >> 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sec_engine *e;
    static const unsigned addrs[] = {SEC_DW_SRC_L, SEC_DW_DST_L, SEC_DW_AKEY_L, SEC_DW_AIV_L,
                                     SEC_DW_CKEY_L, SEC_DW_MAC_L, SEC_DW_CIV_L};
    uint32_t bd[SEC_SQE_DWORDS], before[SEC_SQE_DWORDS];
    struct iommu_domain *d;
    struct ctl c = {0};
    uint8_t *ram;
    uint64_t ram_size;
    int r;

    if (size < 1 + SEC_SQE_SIZE)
        return 0;
    if (e == NULL && sec_engine_create(&e) != 0)
        abort();
    memcpy(bd, data + 1, SEC_SQE_SIZE);
    ram_size = size - 1 - SEC_SQE_SIZE;
    if (ram_size > RAM_MAX)
        ram_size = RAM_MAX;
    ram_size = (ram_size + 4095) & ~UINT64_C(4095);
    if (ram_size == 0)
        ram_size = 4096;
    ram = aligned_alloc(4096, ram_size);
    if (ram == NULL || iommu_domain_create(1, &d) != 0)
        abort();
    memset(ram, 0, ram_size);
    memcpy(ram, data + 1 + SEC_SQE_SIZE, AM_MIN(size - 1 - SEC_SQE_SIZE, ram_size));
    if (iommu_map_host(d, RAM_IOVA, ram_size, ram, IOMMU_READ | IOMMU_WRITE) != 0)
        abort();
    if (data[0] & 1u)
        for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++)
            fold(bd, addrs[i], ram_size);
    c.d = d;
    c.cancel_after = data[0] & 2u ? (data[0] >> 2) & 7u : ~0u;
    memcpy(before, bd, sizeof(bd));
    r = sec_engine_run(e, d, bd, 0, &ctl_ops, &c);
    if (r == 0 && !sec_bd_done(bd))
        abort();
    if (r == -ECANCELED && memcmp(before, bd, sizeof(bd)) != 0)
        abort();
    if (r != 0 && r != -ECANCELED)
        abort();
    iommu_unmap(d, RAM_IOVA, ram_size);
    iommu_domain_destroy(d);
    free(ram);
    return 0;
}
