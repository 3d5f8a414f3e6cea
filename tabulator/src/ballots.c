/* ballots.c — the collapsing ballot store (see ballots.h): a hash table over the mark
 * sequences, open addressing with linear probing, doubling at half load. */
#include "ballots.h"

#include <stdlib.h>
#include <string.h>

void ballots_init(ballot_store *s)
{
    memset(s, 0, sizeof(*s));
}

void ballots_free(ballot_store *s)
{
    free(s->marks);
    free(s->groups);
    free(s->table);
    memset(s, 0, sizeof(*s));
}

/* FNV-1a over the 16-bit marks, finished with a multiply-xorshift so the low bits used
 * to pick a slot depend on every mark. */
static uint64_t hash_marks(const uint16_t *m, uint32_t len)
{
    uint64_t h = 1469598103934665603ull ^ len;
    for (uint32_t i = 0; i < len; i++) {
        h ^= m[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

static int grow_table(ballot_store *s)
{
    size_t ncap = s->table_cap ? s->table_cap * 2 : 1024;
    uint32_t *nt = calloc(ncap, sizeof(*nt));

    if (!nt)
        return -1;
    for (size_t g = 0; g < s->ngroups; g++) {
        size_t i = s->groups[g].hash & (ncap - 1);
        while (nt[i])
            i = (i + 1) & (ncap - 1);
        nt[i] = (uint32_t)g + 1;
    }
    free(s->table);
    s->table = nt;
    s->table_cap = ncap;
    return 0;
}

static int add_weight(int64_t *acc, int64_t w)
{
    if (*acc > INT64_MAX - w)
        return -1;
    *acc += w;
    return 0;
}

int ballots_add(ballot_store *s, const uint16_t *marks, uint32_t len, int64_t weight)
{
    uint64_t h = hash_marks(marks, len);
    ballot_group *g;
    size_t i;

    if (add_weight(&s->total_weight, weight) < 0)
        return -2;
    s->rows++;
    if ((s->ngroups + 1) * 2 > s->table_cap && grow_table(s) < 0)
        return -1;
    for (i = h & (s->table_cap - 1); s->table[i]; i = (i + 1) & (s->table_cap - 1)) {
        g = &s->groups[s->table[i] - 1];
        if (g->hash == h && g->len == len &&
            (len == 0 || memcmp(s->marks + g->off, marks, len * sizeof(*marks)) == 0)) {
            g->weight += weight; /* cannot overflow: total_weight bounds it */
            g->rows++;
            return 0;
        }
    }
    if (s->ngroups >= INT32_MAX || s->nmarks + len > UINT32_MAX)
        return -1;
    if (s->nmarks + len > s->marks_cap) {
        size_t ncap = s->marks_cap ? s->marks_cap * 2 : 4096;
        uint16_t *nm;
        while (ncap < s->nmarks + len)
            ncap *= 2;
        nm = realloc(s->marks, ncap * sizeof(*nm));
        if (!nm)
            return -1;
        s->marks = nm;
        s->marks_cap = ncap;
    }
    if (s->ngroups == s->groups_cap) {
        size_t ncap = s->groups_cap ? s->groups_cap * 2 : 256;
        ballot_group *ng = realloc(s->groups, ncap * sizeof(*ng));
        if (!ng)
            return -1;
        s->groups = ng;
        s->groups_cap = ncap;
    }
    if (len)
        memcpy(s->marks + s->nmarks, marks, len * sizeof(*marks));
    g = &s->groups[s->ngroups];
    g->off = (uint32_t)s->nmarks;
    g->len = len;
    g->hash = h;
    g->weight = weight;
    g->rows = 1;
    s->nmarks += len;
    s->table[i] = (uint32_t)++s->ngroups;
    return 0;
}
