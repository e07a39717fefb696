/* libFuzzer target: the HPRE engine on one SQE (decode, every algorithm's
 * operand checks and computation, the DMA paths).
 *
 * Input: byte 0 steers, bytes 1..64 are the SQE (zero-padded when short),
 * the rest fills the guest RAM (HPRE_FUZZ_RAM bytes from its start).
 * Byte 0 bit 0: queue type (HPRE_QTYPE_V2 / HPRE_QTYPE_ECC). Bit 1: the
 * key, in and out addresses are taken modulo the RAM size and placed inside
 * it (most inputs then reach the algorithms; without it they are used as
 * they are, so unmapped and wrapping addresses are exercised). Bit 2: the
 * RAM's last page is unmapped (partly mapped operands). Bit 3: the job is
 * cancelled when it asks before its write.
 *
 * Checks beyond the sanitizers: a completed job has done == 3 and left
 * every dword but dw0 as it was; a cancelled one left the SQE untouched;
 * nothing outside [out, out + 2 * 512) changed in RAM.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hpre/hpre.h"
#include "iommu/iommu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HPRE_FUZZ_RAM_IOVA (UINT64_C(0x10000))
#define HPRE_FUZZ_RAM (4u * IOMMU_PAGE_SIZE)

struct hpre_fuzz {
    struct iommu_domain *d[2]; /* [1]: last page unmapped */
    struct hpre_engine *e;
    uint8_t *ram;
    uint8_t *copy;
};

/* The harness's only state, created on first use (the curve tables cost
 * more than an input). */
static struct hpre_fuzz fz;

static void hpre_fuzz_init(void)
{
    if (fz.e)
        return;
    fz.ram = aligned_alloc(IOMMU_PAGE_SIZE, HPRE_FUZZ_RAM);
    fz.copy = malloc(HPRE_FUZZ_RAM);
    if (!fz.ram || !fz.copy || hpre_engine_create(&fz.e) || iommu_domain_create(1, &fz.d[0]) ||
        iommu_domain_create(2, &fz.d[1]) ||
        iommu_map_host(fz.d[0], HPRE_FUZZ_RAM_IOVA, HPRE_FUZZ_RAM, fz.ram,
                       IOMMU_READ | IOMMU_WRITE) ||
        iommu_map_host(fz.d[1], HPRE_FUZZ_RAM_IOVA, HPRE_FUZZ_RAM - IOMMU_PAGE_SIZE, fz.ram,
                       IOMMU_READ | IOMMU_WRITE))
        abort();
}

static bool hpre_fuzz_cancel_before_write(void *opaque)
{
    int *asks = opaque;

    return ++*asks >= 2;
}

static int hpre_fuzz_write(void *opaque, uint64_t iova, const void *buf, uint64_t len)
{
    (void)opaque;
    /* Only the unmapped-page domain can fault; use the first, and let the
     * engine's reads see the partial mapping. */
    return iommu_dma_write(fz.d[0], iova, buf, len);
}

static void hpre_fuzz_place(uint32_t *sqe, unsigned lo)
{
    uint64_t a = (uint64_t)sqe[lo] | (uint64_t)sqe[lo + 1] << 32;

    a = HPRE_FUZZ_RAM_IOVA + a % HPRE_FUZZ_RAM;
    sqe[lo] = (uint32_t)a;
    sqe[lo + 1] = (uint32_t)(a >> 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct hpre_job_ops ops = { .write = hpre_fuzz_write,
                                      .cancelled = hpre_fuzz_cancel_before_write };
    uint32_t sqe[HPRE_SQE_DWORDS] = { 0 }, before[HPRE_SQE_DWORDS];
    uint8_t steer;
    uint64_t out, out_end;
    int asks = 0, rc;

    if (size < 1)
        return 0;
    hpre_fuzz_init();
    steer = data[0];
    data++;
    size--;
    memcpy(sqe, data, size < HPRE_SQE_SIZE ? size : HPRE_SQE_SIZE);
    data += size < HPRE_SQE_SIZE ? size : HPRE_SQE_SIZE;
    size -= size < HPRE_SQE_SIZE ? size : HPRE_SQE_SIZE;
    memset(fz.ram, 0, HPRE_FUZZ_RAM);
    memcpy(fz.ram, data, size < HPRE_FUZZ_RAM ? size : HPRE_FUZZ_RAM);
    if (steer & 2u) {
        hpre_fuzz_place(sqe, HPRE_SQE_KEY_LO);
        hpre_fuzz_place(sqe, HPRE_SQE_IN_LO);
        hpre_fuzz_place(sqe, HPRE_SQE_OUT_LO);
    }
    memcpy(before, sqe, sizeof(sqe));
    memcpy(fz.copy, fz.ram, HPRE_FUZZ_RAM);

    if (steer & 8u)
        rc = hpre_engine_run(fz.e, fz.d[(steer >> 2) & 1u], sqe, steer & 1u, &ops, &asks);
    else
        rc = hpre_engine_run(fz.e, fz.d[(steer >> 2) & 1u], sqe, steer & 1u, NULL, NULL);

    if (rc == -ECANCELED) {
        if (memcmp(sqe, before, sizeof(sqe)))
            abort();
    } else if (rc == 0) {
        if (sqe[0] >> HPRE_DW0_DONE_SHIFT != HPRE_DONE_TASK_DONE ||
            memcmp(sqe + 1, before + 1, sizeof(sqe) - sizeof(sqe[0])))
            abort();
    } else {
        abort(); /* -EINVAL cannot happen here; -EIO is an engine bug */
    }
    out = (uint64_t)sqe[HPRE_SQE_OUT_LO] | (uint64_t)sqe[HPRE_SQE_OUT_LO + 1] << 32;
    out_end = out + 2u * HPRE_RSA_MAX_KSZ;
    for (uint64_t i = 0; i < HPRE_FUZZ_RAM; i++) {
        uint64_t iova = HPRE_FUZZ_RAM_IOVA + i;

        if ((iova < out || iova >= out_end || out_end < out) && fz.ram[i] != fz.copy[i])
            abort();
    }
    return 0;
}
