/* libFuzzer target: the device-state stream decoder, and (for inputs that
 * decode) the whole resume path of a VF: mig_write in pieces on a RESUMING
 * device, RESUMING -> STOP (validate + load into the model), -> RUNNING,
 * reset.
 *
 * Input: byte 0 steers, the rest is the stream. Bit 0: recompute the END
 * record's CRC over the stream (so mutations get past the CRC and reach the
 * record and value checks and the loader). Bit 1: run the device path when
 * the stream decodes. Bits 2..7: the write piece size (0 = all at once).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/common.h"
#include "mig/mig.h"
#include "mig/stream.h"
#include "qm/qm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_device(const uint8_t *s, size_t len, size_t piece)
{
    struct qm_dev_config cfg;
    struct qm_dev *dev;
    struct mig_dev *m;

    qm_dev_config_default(&cfg);
    cfg.num_vfs = 1;
    cfg.workers = 1;
    if (qm_dev_create(&cfg, &dev) != 0)
        return;
    if (mig_dev_create(dev, 1, MIG_HW_V4, &m) == 0) {
        if (mig_set_state(m, VFIO_MIG_STATE_RESUMING) == 0) {
            for (size_t off = 0; off < len;) {
                size_t n = piece == 0 ? len - off : AM_MIN(piece, len - off);

                if (mig_write(m, s + off, n) < 0)
                    break;
                off += n;
            }
            if (mig_set_state(m, VFIO_MIG_STATE_STOP) == 0)
                mig_set_state(m, VFIO_MIG_STATE_RUNNING);
        }
        mig_reset(m);
        mig_dev_destroy(m);
    }
    qm_dev_destroy(dev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mig_stream_content content;
    uint8_t buf[MIG_STREAM_MAX];
    struct mig_match match;
    char err[192];
    size_t len;
    uint8_t mode;

    /* The raw bytes, whole and as a prefix a destination would be checking. */
    mig_stream_decode(data, size, &content, err, sizeof(err));
    mig_stream_peek_match(data, size, &match, err, sizeof(err));
    if (size < 1 || size - 1 > sizeof(buf))
        return 0;
    mode = data[0];
    len = size - 1;
    memcpy(buf, data + 1, len);
    if ((mode & 1u) && len >= MIG_STREAM_HDR_LEN + MIG_REC_HDR_LEN + MIG_END_LEN)
        am_st32(buf + len - MIG_END_LEN, am_crc32c(0, buf, len - MIG_END_LEN));
    if (mig_stream_decode(buf, len, &content, err, sizeof(err)) != 0 || !(mode & 2u))
        return 0;
    run_device(buf, len, mode >> 2);
    return 0;
}
