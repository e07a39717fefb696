#include "vmm/vm_ram.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

/* Zero ranges at least this long are hole-punched (memory given back);
 * shorter ones are cleared with memset, cheaper than a system call. */
#define RAM_PUNCH_MIN (UINT64_C(16) * VM_RAM_PAGE_SIZE)

struct vm_ram {
    struct guest_ram guest; /* host, size, cpu_dirty (the log itself) */
    int fd;
    uint64_t pages;
};

int vm_ram_create(uint64_t size, struct vm_ram **out)
{
    struct vm_ram *ram;
    int ret;

    if (out == NULL || size == 0 || size % VM_RAM_PAGE_SIZE != 0 || size > VM_RAM_MAX_SIZE)
        return -EINVAL;
    ram = calloc(1, sizeof(*ram));
    if (ram == NULL)
        return -ENOMEM;
    ram->pages = size >> VM_RAM_PAGE_SHIFT;
    ram->guest.size = size;
    ram->guest.cpu_dirty = calloc(am_bitmap_words(ram->pages), sizeof(uint64_t));
    if (ram->guest.cpu_dirty == NULL) {
        ret = -ENOMEM;
        goto err_free;
    }
    /* Sealable: a device server seals it against shrinking (F_SEAL_SHRINK)
     * and may then use it zero-copy, as QEMU's memfd backend allows. */
    ram->fd = memfd_create("accmig-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (ram->fd < 0) {
        ret = -errno;
        goto err_free_log;
    }
    if (ftruncate(ram->fd, (off_t)size) != 0) {
        ret = -errno;
        goto err_close;
    }
    /* MAP_NORESERVE: a large guest is mostly untouched; pages come on first use. */
    ram->guest.host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, ram->fd, 0);
    if (ram->guest.host == MAP_FAILED) {
        ret = -errno;
        goto err_close;
    }
    *out = ram;
    return 0;

err_close:
    close(ram->fd);
err_free_log:
    free(ram->guest.cpu_dirty);
err_free:
    free(ram);
    return ret;
}

void vm_ram_destroy(struct vm_ram *ram)
{
    if (ram == NULL)
        return;
    munmap(ram->guest.host, ram->guest.size);
    close(ram->fd);
    free(ram->guest.cpu_dirty);
    free(ram);
}

const struct guest_ram *vm_ram_guest(const struct vm_ram *ram) { return &ram->guest; }
uint8_t *vm_ram_host(const struct vm_ram *ram) { return ram->guest.host; }
uint64_t vm_ram_size(const struct vm_ram *ram) { return ram->guest.size; }
uint64_t vm_ram_pages(const struct vm_ram *ram) { return ram->pages; }
int vm_ram_fd(const struct vm_ram *ram) { return ram->fd; }
uint64_t vm_ram_bitmap_words(const struct vm_ram *ram) { return am_bitmap_words(ram->pages); }

uint64_t vm_ram_dirty_collect(struct vm_ram *ram, uint64_t *bitmap)
{
    uint64_t words = am_bitmap_words(ram->pages);
    uint64_t n = 0;

    for (uint64_t w = 0; w < words; w++) {
        uint64_t v;

        /* A plain load first: most words are clean, and an exchange on
         * every word would dirty every cache line of the log. */
        if (__atomic_load_n(&ram->guest.cpu_dirty[w], __ATOMIC_RELAXED) == 0)
            continue;
        /* Acquire: the page data written before the bit was set is what
         * the caller reads next. */
        v = __atomic_exchange_n(&ram->guest.cpu_dirty[w], 0, __ATOMIC_ACQUIRE);
        n += (uint64_t)__builtin_popcountll(v & ~bitmap[w]);
        bitmap[w] |= v;
    }
    return n;
}

int vm_ram_dirty_merge_dma(const struct vm_ram *ram, uint64_t *bitmap, const uint64_t *dma_bitmap,
                           uint64_t iova, uint64_t length, uint64_t page_size)
{
    uint64_t end, sub, nbits;

    if (!AM_IS_POW2(page_size) || page_size < VM_RAM_PAGE_SIZE || iova % page_size != 0)
        return -EINVAL;
    if (am_add_overflows_u64(iova, length, &end))
        return -EOVERFLOW;
    if (end > ram->guest.size)
        return -ERANGE;
    sub = page_size >> VM_RAM_PAGE_SHIFT;
    nbits = length / page_size + (length % page_size != 0);
    for (uint64_t w = 0; w < am_bitmap_words(nbits); w++) {
        uint64_t v = dma_bitmap[w];

        if (w == nbits / 64 && nbits % 64 != 0)
            v &= (UINT64_C(1) << (nbits % 64)) - 1;
        while (v != 0) {
            uint64_t bit = w * 64 + (uint64_t)__builtin_ctzll(v);
            uint64_t first = (iova >> VM_RAM_PAGE_SHIFT) + bit * sub;
            /* The last device page may reach past RAM when length is not a
             * multiple of page_size: clip to RAM. */
            uint64_t count = AM_MIN(sub, ram->pages - first);

            am_bitmap_set_range(bitmap, first, count);
            v &= v - 1;
        }
    }
    return 0;
}

void vm_ram_dirty_set_all(const struct vm_ram *ram, uint64_t *bitmap)
{
    am_bitmap_set_range(bitmap, 0, ram->pages);
}

int vm_ram_zero_range(struct vm_ram *ram, uint64_t gpa, uint64_t len)
{
    if (!am_range_ok(gpa, len, ram->guest.size))
        return -ERANGE;
    if (gpa % VM_RAM_PAGE_SIZE != 0 || len % VM_RAM_PAGE_SIZE != 0)
        return -EINVAL;
    if (len < RAM_PUNCH_MIN) {
        memset(ram->guest.host + gpa, 0, len);
        return 0;
    }
    if (fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)gpa, (off_t)len) != 0)
        return -errno;
    return 0;
}

int vm_ram_find_data(const struct vm_ram *ram, uint64_t gpa, uint64_t *data_start,
                     uint64_t *data_end)
{
    struct stat st;
    off_t d, h;

    if (gpa >= ram->guest.size)
        return -ERANGE;
    /* Every page backed (prefaulted or all written, swapped ones counted):
     * no hole to look for. SEEK_HOLE would walk the page cache from gpa to
     * the end, 1.6 ms for 256 MiB. */
    if (fstat(ram->fd, &st) == 0 && (uint64_t)st.st_blocks * 512u >= ram->guest.size) {
        *data_start = AM_ALIGN_DOWN(gpa, VM_RAM_PAGE_SIZE);
        *data_end = ram->guest.size;
        return 0;
    }
    d = lseek(ram->fd, (off_t)gpa, SEEK_DATA);
    if (d < 0) {
        if (errno != ENXIO)
            return -errno;
        /* ENXIO: nothing but holes up to the end. */
        *data_start = *data_end = ram->guest.size;
        return 0;
    }
    h = lseek(ram->fd, d, SEEK_HOLE);
    if (h < 0)
        return -errno;
    /* shmem reports whole pages; align anyway so callers can rely on it. */
    *data_start = AM_ALIGN_DOWN((uint64_t)d, VM_RAM_PAGE_SIZE);
    *data_end = AM_MIN(AM_ALIGN_UP((uint64_t)h, VM_RAM_PAGE_SIZE), ram->guest.size);
    return 0;
}
