/* vmm/vm_ram: the mini-VMM's guest RAM and its CPU-write dirty log.
 *
 * Guest RAM is one memfd (shareable with a vfio-user device server by
 * SCM_RIGHTS, which maps the same pages for DMA) mapped MAP_SHARED at a host
 * address. Guest physical address gpa lives at host + gpa.
 *
 * Dirty tracking works at VM_RAM_PAGE_SIZE (4 KiB) pages: bit i of a bitmap
 * (word i/64, bit i%64, the VFIO DMA_LOGGING_REPORT layout) covers gpa
 * i*4096. The guest's CPU writes are logged by guest_ram_mark_dirty() into
 * the log of struct guest_ram; the device's DMA writes come from the device's
 * DMA logging report and are merged with vm_ram_dirty_merge_dma(). Precopy
 * iterates on the union of both.
 *
 * Contract
 * - vm_ram_create: size must be a non-zero multiple of 4096 and at most
 *   VM_RAM_MAX_SIZE, else -EINVAL; -ENOMEM/-EMFILE/... from the system calls.
 *   The RAM reads as zero and takes no memory until touched.
 * - The struct guest_ram returned by vm_ram_guest() stays valid until
 *   vm_ram_destroy(); its cpu_dirty log is always on.
 * - Bitmaps passed in are caller-owned arrays of vm_ram_bitmap_words() words.
 * - Thread safety: guest_ram_mark_dirty() and vm_ram_dirty_collect() may run
 *   at the same time from any threads (atomic word operations). A page whose
 *   write is logged after the collect that cleared its bit is reported by the
 *   next collect: guest_ram_mark_dirty() must be called after the write.
 */
#ifndef ACCMIG_VMM_VM_RAM_H
#define ACCMIG_VMM_VM_RAM_H

#include <stdint.h>

#include "guest/vf_io.h"

#define VM_RAM_PAGE_SHIFT 12
#define VM_RAM_PAGE_SIZE (UINT64_C(1) << VM_RAM_PAGE_SHIFT)
#define VM_RAM_MAX_SIZE (UINT64_C(64) << 30)

struct vm_ram;

int vm_ram_create(uint64_t size, struct vm_ram **out);
/* Unmaps and closes the memfd (a device server that received the fd keeps
 * its own mapping). NULL is a no-op. */
void vm_ram_destroy(struct vm_ram *ram);

/* The guest's view (host pointer, size, CPU dirty log). */
const struct guest_ram *vm_ram_guest(const struct vm_ram *ram);
uint8_t *vm_ram_host(const struct vm_ram *ram);
uint64_t vm_ram_size(const struct vm_ram *ram);
uint64_t vm_ram_pages(const struct vm_ram *ram);
/* The memfd; still owned by ram (dup it to keep it longer). */
int vm_ram_fd(const struct vm_ram *ram);
/* Words of a bitmap covering every page of ram. */
uint64_t vm_ram_bitmap_words(const struct vm_ram *ram);

/* Report-and-clear of the CPU log: ORs every logged page into bitmap and
 * clears it from the log, atomically per 64-page word. Returns the number of
 * pages that were newly logged. */
uint64_t vm_ram_dirty_collect(struct vm_ram *ram, uint64_t *bitmap);

/* Union with a device DMA log in the DMA_LOGGING_REPORT layout: bit i of
 * dma_bitmap covers [iova + i*page_size, +page_size). page_size must be a
 * power of two >= 4096 and iova page_size-aligned (-EINVAL), [iova,
 * iova+length) inside RAM (-ERANGE); a range that overflows is -EOVERFLOW.
 * Bits past length are ignored. Each covered 4 KiB page is set in bitmap. */
int vm_ram_dirty_merge_dma(const struct vm_ram *ram, uint64_t *bitmap, const uint64_t *dma_bitmap,
                           uint64_t iova, uint64_t length, uint64_t page_size);

/* Sets every page's bit (a first precopy round sends everything). */
void vm_ram_dirty_set_all(const struct vm_ram *ram, uint64_t *bitmap);

/* Makes [gpa, gpa+len) read as zero; large page-aligned ranges give their
 * memory back (hole punch). -ERANGE outside RAM, -EINVAL if not page-aligned. */
int vm_ram_zero_range(struct vm_ram *ram, uint64_t gpa, uint64_t len);

/* From gpa, finds the next range of pages that may hold data: *data_start
 * >= gpa is the first page backed by memory, *data_end the end of that
 * backed range (both page-aligned, <= size). Pages in [gpa, *data_start) are
 * holes that read as zero without being touched. When no backed page
 * follows, *data_start = *data_end = size. -ERANGE when gpa >= size. */
int vm_ram_find_data(const struct vm_ram *ram, uint64_t gpa, uint64_t *data_start,
                     uint64_t *data_end);

#endif
