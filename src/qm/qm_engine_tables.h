/* qm_engine_tables: engine tables defined outside qm_engine.c, one file per
 * engine (private to src/qm; the registry in qm_engine.c lists them). */
#ifndef ACCMIG_QM_ENGINE_TABLES_H
#define ACCMIG_QM_ENGINE_TABLES_H

#include "qm/qm_engine.h"

extern const struct qm_engine qm_engine_hpre; /* qm_engine_hpre.c */

#endif
