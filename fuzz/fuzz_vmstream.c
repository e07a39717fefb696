/* libFuzzer target: the destination side of the VM migration stream
 * (src/vmm/vmstream.c): the hello check, every record check and handler,
 * the END check, the failure answer and the drain that follows it.
 *
 * Input: byte 0 steers, the rest is what the source sends. Bit 0: put a
 * valid source hello (matching the destination's profile) in front, so most
 * inputs reach the record handlers. Bit 1: the destination's device refuses
 * the first device chunk (the refusal path) instead of taking every byte.
 * Bits 2..7: unused.
 *
 * The bytes go through a real socketpair: a feeder thread writes them (and
 * reads and drops whatever the destination answers, so neither side can
 * block the other), then shuts its writing side, so the destination sees
 * the end of the stream as a truncation. Guest RAM is 1 MiB, the timeout
 * 1 s (no input should ever need it: every wait ends with the feeder's
 * shutdown).
 *
 * The guest RAM lives for the whole fuzzing process (the harness's only
 * state): mapping and faulting in a fresh memfd per input cost more than
 * the stream itself, and what a previous input left in it steers nothing.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qm/qm_hw.h"
#include "vmm/vm_ram.h"
#include "vmm/vmstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_RAM_SIZE (1u << 20)
#define FUZZ_TIMEOUT_MS 1000
#define FUZZ_INPUT_MAX (2u << 20) /* past a full RAM record of this RAM */

static const struct vmstream_profile fuzz_profile = {
    .vendor_id = QM_VENDOR_ID,
    .device_id = QM_ZIP_VF_DEVICE_ID,
    .revision = QM_REV_V4,
    .qp_count = 4,
    .ram_size = FUZZ_RAM_SIZE,
    .page_size = VM_RAM_PAGE_SIZE,
};

/* The source side of one input. */
struct fuzz_feed {
    int fd;
    const uint8_t *pre, *data; /* hello (or NULL), then the input */
    size_t pre_len, len;
};

/* Writes pre + data while dropping whatever comes back, then shuts the
 * writing side and drops until the destination hangs up. Every send and
 * recv is non-blocking; poll() waits for either direction. */
static void *fuzz_feeder(void *arg)
{
    struct fuzz_feed *f = arg;
    uint8_t sink[4096];
    size_t off = 0, total = f->pre_len + f->len;
    bool writing = true;

    if (total == 0) {
        shutdown(f->fd, SHUT_WR);
        writing = false;
    }
    for (;;) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN | (writing ? POLLOUT : 0)};

        if (poll(&p, 1, 2 * FUZZ_TIMEOUT_MS) <= 0)
            break; /* the destination's own timeout ends it */
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(f->fd, sink, sizeof(sink), MSG_DONTWAIT);

            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break;
        }
        if (writing && (p.revents & POLLOUT)) {
            const uint8_t *src = off < f->pre_len ? f->pre + off : f->data + (off - f->pre_len);
            size_t chunk = off < f->pre_len ? f->pre_len - off : total - off;
            ssize_t n = send(f->fd, src, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);

            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                writing = false; /* the destination hung up: just drain */
            if (off == total || !writing) {
                shutdown(f->fd, SHUT_WR);
                writing = false;
            }
        }
    }
    return NULL;
}

static int fuzz_dev_write(void *opaque, const void *buf, size_t len, char *why, size_t why_len)
{
    bool *refuse = opaque;

    (void)buf;
    (void)len;
    if (*refuse) {
        snprintf(why, why_len, "fuzz device refuses its state");
        return -EINVAL;
    }
    return 0;
}

static int fuzz_dev_finish(void *opaque, char *why, size_t why_len)
{
    (void)opaque;
    (void)why;
    (void)why_len;
    return 0;
}

/* A valid source hello for fuzz_profile, as the wire has it. */
static void fuzz_hello(uint8_t h[48])
{
    memset(h, 0, 48);
    memcpy(h, "ACCMIGVM", 8);
    h[8] = VMSTREAM_VERSION_MAJOR;
    h[10] = VMSTREAM_VERSION_MINOR;
    h[12] = 48;
    h[16] = VMSTREAM_SOURCE;
    h[20] = (uint8_t)(VM_RAM_PAGE_SIZE & 0xff);
    h[21] = (uint8_t)(VM_RAM_PAGE_SIZE >> 8);
    for (int i = 0; i < 8; i++)
        h[24 + i] = (uint8_t)((uint64_t)FUZZ_RAM_SIZE >> (8 * i));
    h[32] = (uint8_t)QM_VENDOR_ID;
    h[33] = (uint8_t)(QM_VENDOR_ID >> 8);
    h[34] = (uint8_t)QM_ZIP_VF_DEVICE_ID;
    h[35] = (uint8_t)(QM_ZIP_VF_DEVICE_ID >> 8);
    h[36] = 4;
    h[40] = QM_REV_V4;
}

static struct vm_ram *fuzz_ram;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t hello[48];
    struct fuzz_feed feed;
    struct vmstream *s = NULL;
    pthread_attr_t attr;
    pthread_t feeder;
    bool refuse;
    struct vmstream_device_ops ops = {.write = fuzz_dev_write, .finish = fuzz_dev_finish,
                                      .opaque = &refuse};
    int sv[2];

    if (size < 1 || size - 1 > FUZZ_INPUT_MAX)
        return 0;
    refuse = (data[0] & 2u) != 0;

    fuzz_hello(hello);
    feed = (struct fuzz_feed){.pre = (data[0] & 1u) ? hello : NULL,
                              .pre_len = (data[0] & 1u) ? sizeof(hello) : 0,
                              .data = data + 1, .len = size - 1};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    feed.fd = sv[0];
    if ((fuzz_ram == NULL && vm_ram_create(FUZZ_RAM_SIZE, &fuzz_ram) != 0) ||
        vmstream_create(sv[1], VMSTREAM_DEST, FUZZ_TIMEOUT_MS, &s) != 0)
        abort();
    /* A small stack is plenty (the feeder uses about 4 KiB) and cheaper to
     * map for every input. */
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, 256u << 10) != 0 ||
        pthread_create(&feeder, &attr, fuzz_feeder, &feed) != 0)
        abort();
    pthread_attr_destroy(&attr);
    if (vmstream_handshake(s, &fuzz_profile, NULL) == 0)
        vmstream_recv_loop(s, fuzz_ram, &ops);
    /* Whatever happened, the destination is done: the feeder's next read
     * sees the end. */
    shutdown(sv[1], SHUT_RDWR);
    pthread_join(feeder, NULL);
    vmstream_destroy(s);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
