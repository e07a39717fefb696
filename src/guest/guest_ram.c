/* guest_ram: the guest's side of the VMM's CPU dirty log (vf_io.h). */
#include "common/common.h"
#include "guest/vf_io.h"

#define GUEST_RAM_DIRTY_PAGE 4096u

void guest_ram_mark_dirty(const struct guest_ram *ram, uint64_t gpa, uint64_t len)
{
    uint64_t first, last;

    if (!ram->cpu_dirty || len == 0 || gpa >= ram->size)
        return;
    if (len > ram->size - gpa)
        len = ram->size - gpa; /* the part inside RAM; nothing exists beyond it */
    first = gpa / GUEST_RAM_DIRTY_PAGE;
    last = (gpa + len - 1) / GUEST_RAM_DIRTY_PAGE;
    if (first == last)
        am_bitmap_set(ram->cpu_dirty, first);
    else
        am_bitmap_set_range(ram->cpu_dirty, first, last - first + 1);
}
