/* conform/stress */
#include "conform/cf_int.h"

void cf_group_stress(struct cf_ctx *x)
{
    cf_check(x, "all", CF_SKIP, "not written yet");
}
