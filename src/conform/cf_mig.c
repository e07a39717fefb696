/* conform/migration */
#include "conform/cf_int.h"

void cf_group_migration(struct cf_ctx *x)
{
    cf_check(x, "all", CF_SKIP, "not written yet");
}
