/* libFuzzer target: the vfio-user server's message handling, through the
 * buffer transport (no socket, no descriptors): framing, every command
 * handler, the device model and migration driver behind them, and the
 * session teardown (reset, unmap) at the end of each input.
 *
 * Input: byte 0 steers, the rest is the client's byte stream. Bit 0: put a
 * valid VERSION handshake in front (so most inputs reach the handlers).
 * Bit 1: v3 mode (32 KiB BAR2, migration through the VF BAR's upper half).
 * Bits 2..7: bytes handed out per transport read (0 = all there is), to
 * exercise message reassembly.
 *
 * The device (one per mode) lives for the whole fuzzing process: creating
 * and destroying the model costs milliseconds per input, and each input's
 * session close must leave the VF clean for the next one anyway (that is
 * the server's contract, so leftovers between inputs are findings too).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vfu/vfu.h"
#include "vfu/vfu_msg.h"
#include "vfu/vfu_tran.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_caps[] = "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":65536}}";

/* Builds [VERSION message][input] into a fresh buffer. */
static uint8_t *fuzz_input(const uint8_t *data, size_t size, bool version, size_t *len)
{
    struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_VERSION, .flags = VFU_HDR_TYPE_COMMAND};
    struct vfu_version v = {VFU_VERSION_MAJOR, VFU_VERSION_MINOR};
    size_t pre = version ? sizeof(h) + sizeof(v) + sizeof(fuzz_caps) : 0;
    uint8_t *buf = malloc(pre + size + 1);

    if (!buf)
        return NULL;
    if (version) {
        h.size = (uint32_t)pre;
        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), &v, sizeof(v));
        memcpy(buf + sizeof(h) + sizeof(v), fuzz_caps, sizeof(fuzz_caps));
    }
    if (size)
        memcpy(buf + pre, data, size);
    *len = pre + size;
    return buf;
}

/* The harness's only state: the two devices, created on first use. */
static struct vfu_device *fuzz_devs[2];

static struct vfu_device *fuzz_device(bool v3)
{
    struct vfu_device_config cfg;

    if (!fuzz_devs[v3]) {
        vfu_device_config_default(&cfg);
        cfg.num_vfs = 1;
        cfg.qps_per_vf = 2;
        cfg.workers = 1;
        cfg.hw = v3 ? MIG_HW_V3 : MIG_HW_V4;
        if (vfu_device_create(&cfg, &fuzz_devs[v3]) != 0)
            abort();
    }
    return fuzz_devs[v3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vfu_device *dev;
    struct vfu_session *s;
    struct vfu_buf_tran b = {0};
    struct vfu_tran t;
    uint8_t *in;
    size_t len;

    if (size < 1)
        return 0;
    in = fuzz_input(data + 1, size - 1, data[0] & 1, &len);
    if (!in)
        return 0;
    dev = fuzz_device(data[0] & 2);
    b.in = in;
    b.in_len = len;
    b.max_chunk = data[0] >> 2;
    vfu_tran_buf_init(&t, &b); /* replies are counted, not kept */
    if (vfu_session_open(vfu_device_vf(dev, 0), &t, &s) == 0) {
        while (vfu_session_process(s) == 0)
            ;
        vfu_session_close(s);
    }
    free(in);
    return 0;
}
