/* conform/hostile */
#include "conform/cf_int.h"

void cf_group_hostile(struct cf_ctx *x)
{
    cf_check(x, "all", CF_SKIP, "not written yet");
}
