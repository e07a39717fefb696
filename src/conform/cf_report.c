/* conform/report: one line per check as it happens (text or JSON lines),
 * the summary, and JUnit XML at the end (one testsuite per group). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conform/cf_int.h"

static const char *const verdicts[] = {"PASS", "FAIL", "SKIP"};

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void xml_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
        }
    }
}

void cf_report_add(struct cf_report *rep, const char *group, const char *name, enum cf_verdict v,
                   const char *reason, double secs)
{
    if (rep->n == rep->cap) {
        size_t cap = rep->cap ? rep->cap * 2 : 256;
        struct cf_result *r = realloc(rep->r, cap * sizeof(*r));
        if (r) {
            rep->r = r;
            rep->cap = cap;
        }
    }
    if (rep->n < rep->cap) {
        struct cf_result *r = &rep->r[rep->n++];
        r->group = strdup(group);
        r->name = strdup(name);
        r->reason = strdup(reason);
        r->v = v;
        r->secs = secs;
    }
    rep->counts[v]++;
    if (rep->json) {
        fputs("{\"group\":", rep->out);
        json_str(rep->out, group);
        fputs(",\"check\":", rep->out);
        json_str(rep->out, name);
        fprintf(rep->out, ",\"result\":\"%s\",\"reason\":", verdicts[v]);
        json_str(rep->out, reason);
        fputs("}\n", rep->out);
    } else {
        fprintf(rep->out, "%s %s/%s: %s\n", verdicts[v], group, name, reason);
    }
    fflush(rep->out);
}

void cf_report_summary(struct cf_report *rep)
{
    if (rep->json)
        fprintf(rep->out, "{\"summary\":{\"passed\":%u,\"failed\":%u,\"skipped\":%u}}\n",
                rep->counts[CF_PASS], rep->counts[CF_FAIL], rep->counts[CF_SKIP]);
    else
        fprintf(rep->out, "%u passed, %u failed, %u skipped\n", rep->counts[CF_PASS],
                rep->counts[CF_FAIL], rep->counts[CF_SKIP]);
    fflush(rep->out);
}

int cf_report_junit(const struct cf_report *rep, const char *path)
{
    FILE *f = fopen(path, "w");
    size_t i = 0;

    if (!f)
        return -errno;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<testsuites name=\"accmig conform\" tests=\"%zu\" failures=\"%u\" skipped=\"%u\">\n",
            rep->n, rep->counts[CF_FAIL], rep->counts[CF_SKIP]);
    while (i < rep->n) {
        size_t j = i;
        unsigned fails = 0, skips = 0;
        double t = 0;
        /* Checks of a group are recorded together. */
        while (j < rep->n && strcmp(rep->r[j].group, rep->r[i].group) == 0) {
            fails += rep->r[j].v == CF_FAIL;
            skips += rep->r[j].v == CF_SKIP;
            t += rep->r[j].secs;
            j++;
        }
        fprintf(f, "  <testsuite name=\"");
        xml_str(f, rep->r[i].group);
        fprintf(f, "\" tests=\"%zu\" failures=\"%u\" skipped=\"%u\" time=\"%.3f\">\n", j - i, fails,
                skips, t);
        for (size_t k = i; k < j; k++) {
            const struct cf_result *r = &rep->r[k];
            fprintf(f, "    <testcase classname=\"conform.");
            xml_str(f, r->group);
            fprintf(f, "\" name=\"");
            xml_str(f, r->name);
            fprintf(f, "\" time=\"%.3f\"", r->secs);
            if (r->v == CF_PASS) {
                fprintf(f, "/>\n");
                continue;
            }
            fprintf(f, ">\n      <%s message=\"", r->v == CF_FAIL ? "failure" : "skipped");
            xml_str(f, r->reason);
            fprintf(f, "\"/>\n    </testcase>\n");
        }
        fprintf(f, "  </testsuite>\n");
        i = j;
    }
    fprintf(f, "</testsuites>\n");
    return fclose(f) ? -errno : 0;
}

void cf_report_free(struct cf_report *rep)
{
    for (size_t i = 0; i < rep->n; i++) {
        free(rep->r[i].group);
        free(rep->r[i].name);
        free(rep->r[i].reason);
    }
    free(rep->r);
    rep->r = NULL;
    rep->n = rep->cap = 0;
}
