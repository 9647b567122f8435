/*
 * Optional accelerator for monitor.match: the per-occurrence work in C.
 *
 * monitor/match.py has the same logic in pure Python and uses this module
 * only when it imported (tests/test_match_speedups.py runs both and checks
 * they agree). Nothing here decides anything the Python code does not
 * decide in the same way:
 *
 * - Collector: a callable for hyperscan's match handler that only records
 *   (byte end offset, key id); a Python function per candidate cost most of
 *   the scan.
 * - hits_from_collector / hits_from_iter: the candidate filter of
 *   monitor.match.find_terms (word boundaries, exact case, prefix tails)
 *   over candidates from hyperscan (byte offsets) or pyahocorasick
 *   (character offsets), by key id of a KeyTable.
 * - best_sentence: the counting part of monitor.match._evidence.
 * - WordTrie: the engine "wordtrie" of monitor.rules.TermIndex, a trie of
 *   the keys walked from word starts, with the candidate filter built in.
 * - single_groups: every rule that is one group of terms, decided at once.
 *
 * "Letter or digit" is Py_UNICODE_ISALNUM, which is what str.isalnum() and
 * the `[^\W_]` class of `re` test, so word boundaries agree to the code point.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* Letters and digits are mostly ASCII: answer those from a table, the rest as
 * str.isalnum() does. */
static char ascii_alnum[128];

static inline int
is_alnum(Py_UCS4 c)
{
    return c < 128 ? ascii_alnum[c] : Py_UNICODE_ISALNUM(c);
}

/* ------------------------------------------------------------------ */
/* Collector                                                            */

typedef struct {
    unsigned long long end;
    unsigned int key;
} Candidate;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    Py_ssize_t cap;
    Candidate *found;
} Collector;

static void
Collector_dealloc(Collector *self)
{
    PyMem_Free(self->found);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* By end offset, then key id, as monitor.match._scan sorts (end, key) pairs. */
static int
candidate_order(const void *a, const void *b)
{
    const Candidate *x = a, *y = b;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

/* hyperscan calls handler(id, from, to, flags, context). */
static PyObject *
Collector_call(Collector *self, PyObject *args, PyObject *kwargs)
{
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Collector takes no keyword arguments");
        return NULL;
    }
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 3) {
        PyErr_SetString(PyExc_TypeError, "Collector needs (id, from, to, ...)");
        return NULL;
    }
    unsigned long key = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(args, 0));
    if (key == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long long end = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args, 2));
    if (end == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (self->n == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 1024;
        Candidate *found = PyMem_Realloc(self->found, cap * sizeof(Candidate));
        if (found == NULL)
            return PyErr_NoMemory();
        self->found = found;
        self->cap = cap;
    }
    self->found[self->n].end = end;
    self->found[self->n].key = (unsigned int)key;
    self->n++;
    Py_RETURN_NONE;
}

static PyObject *
Collector_len(Collector *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->n);
}

static PyMethodDef Collector_methods[] = {
    {"count", (PyCFunction)Collector_len, METH_NOARGS, "How many candidates were recorded."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CollectorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor._speedups.Collector",
    .tp_doc = "Records hyperscan matches as (byte end, key id), for hits_from_collector.",
    .tp_basicsize = sizeof(Collector),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Collector_dealloc,
    .tp_call = (ternaryfunc)Collector_call,
    .tp_methods = Collector_methods,
};

/* ------------------------------------------------------------------ */
/* The candidate filter                                                 */

typedef struct {
    int kind_low, kind_canon;
    const void *low, *canon;
    Py_ssize_t n;
    PyObject *hits; /* dict: term id -> list of (start, stop) */
} Filter;

/* (a, b) as a tuple, untracked by the garbage collector: it holds two ints,
 * so it can be in no cycle, and the collector need not look at the many
 * thousands a long article makes. */
static PyObject *
make_span(Py_ssize_t a, Py_ssize_t b)
{
    PyObject *span = PyTuple_New(2);
    if (span == NULL)
        return NULL;
    PyObject *x = PyLong_FromSsize_t(a);
    if (x == NULL) {
        Py_DECREF(span);
        return NULL;
    }
    PyTuple_SET_ITEM(span, 0, x);
    x = PyLong_FromSsize_t(b);
    if (x == NULL) {
        Py_DECREF(span);
        return NULL;
    }
    PyTuple_SET_ITEM(span, 1, x);
    PyObject_GC_UnTrack(span);
    return span;
}

static int
filter_init(Filter *f, PyObject *low, PyObject *canon)
{
    if (!PyUnicode_Check(low) || !PyUnicode_Check(canon)) {
        PyErr_SetString(PyExc_TypeError, "low and canon must be str");
        return -1;
    }
    if (PyUnicode_GET_LENGTH(low) != PyUnicode_GET_LENGTH(canon)) {
        PyErr_SetString(PyExc_ValueError, "low and canon must have the same length");
        return -1;
    }
    f->kind_low = PyUnicode_KIND(low);
    f->low = PyUnicode_DATA(low);
    f->kind_canon = PyUnicode_KIND(canon);
    f->canon = PyUnicode_DATA(canon);
    f->n = PyUnicode_GET_LENGTH(low);
    f->hits = PyDict_New();
    return f->hits == NULL ? -1 : 0;
}

/* Unpack a key's info (length, values); borrowed references. */
static int
unpack_info(PyObject *info, Py_ssize_t *length, PyObject **values)
{
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 2 ||
        !PyTuple_Check(PyTuple_GET_ITEM(info, 1))) {
        PyErr_SetString(PyExc_TypeError, "key info must be (length, values)");
        return -1;
    }
    *length = PyLong_AsSsize_t(PyTuple_GET_ITEM(info, 0));
    if (*length == -1 && PyErr_Occurred())
        return -1;
    *values = PyTuple_GET_ITEM(info, 1);
    return 0;
}

/* ------------------------------------------------------------------ */
/* KeyTable: a TermIndex's key_info in flat arrays                      */

/* Walking key_info's nested tuples for every candidate cost more than the
 * rest of the filter (they lie all over memory); the table keeps what the
 * filter reads in a few arrays. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t nkeys;
    Py_ssize_t nentries;
    Py_ssize_t ntids;   /* the largest term id + 1 */
    Py_ssize_t *length; /* per key: its length in characters */
    Py_ssize_t *first;  /* per key: its entries are first[k] .. first[k + 1] - 1 */
    Py_ssize_t *tid;    /* per entry */
    PyObject **exact;   /* per entry: the exact text (owned) or NULL */
    char *prefix;       /* per entry */
    /* Per term id, the list a filter is filling (NULL between calls), and
     * whether a filter is using it: calloc-ing this per article cost more than
     * the filtering. */
    PyObject **lists;
    int busy;
} KeyTable;

static void
KeyTable_dealloc(KeyTable *self)
{
    if (self->exact != NULL) {
        for (Py_ssize_t e = 0; e < self->nentries; e++)
            Py_XDECREF(self->exact[e]); /* NULL where construction stopped early */
    }
    PyMem_Free(self->length);
    PyMem_Free(self->first);
    PyMem_Free(self->tid);
    PyMem_Free(self->exact);
    PyMem_Free(self->prefix);
    PyMem_Free(self->lists);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
KeyTable_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *key_info;
    static char *kwlist[] = {"key_info", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!:KeyTable", kwlist, &PyTuple_Type,
                                     &key_info))
        return NULL;
    KeyTable *self = (KeyTable *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_ssize_t nkeys = PyTuple_GET_SIZE(key_info), nentries = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        Py_ssize_t length;
        PyObject *values;
        if (unpack_info(PyTuple_GET_ITEM(key_info, k), &length, &values) < 0)
            goto error;
        nentries += PyTuple_GET_SIZE(values);
    }
    self->nkeys = nkeys;
    self->length = PyMem_Malloc((nkeys + 1) * sizeof(Py_ssize_t));
    self->first = PyMem_Calloc(nkeys + 1, sizeof(Py_ssize_t));
    self->tid = PyMem_Malloc((nentries + 1) * sizeof(Py_ssize_t));
    self->exact = PyMem_Calloc(nentries + 1, sizeof(PyObject *));
    self->prefix = PyMem_Malloc(nentries + 1);
    if (!self->length || !self->first || !self->tid || !self->exact || !self->prefix) {
        PyErr_NoMemory();
        goto error;
    }
    self->nentries = nentries;
    Py_ssize_t e = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *values;
        unpack_info(PyTuple_GET_ITEM(key_info, k), &self->length[k], &values);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); i++) {
            PyObject *v = PyTuple_GET_ITEM(values, i);
            if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 3) {
                PyErr_SetString(PyExc_TypeError, "key values must be (term id, exact, prefix)");
                goto error;
            }
            Py_ssize_t tid = PyLong_AsSsize_t(PyTuple_GET_ITEM(v, 0));
            if (tid == -1 && PyErr_Occurred())
                goto error;
            if (tid < 0) {
                PyErr_SetString(PyExc_ValueError, "term ids must not be negative");
                goto error;
            }
            PyObject *exact = PyTuple_GET_ITEM(v, 1);
            if (exact != Py_None && !PyUnicode_Check(exact)) {
                PyErr_SetString(PyExc_TypeError, "exact must be str or None");
                goto error;
            }
            self->tid[e] = tid;
            self->exact[e] = exact == Py_None ? NULL : Py_NewRef(exact);
            self->prefix[e] = PyTuple_GET_ITEM(v, 2) == Py_True;
            if (tid + 1 > self->ntids)
                self->ntids = tid + 1;
            e++;
        }
        self->first[k + 1] = e;
    }
    self->lists = PyMem_Calloc(self->ntids + 1, sizeof(PyObject *));
    if (self->lists == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static PyTypeObject KeyTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor._speedups.KeyTable",
    .tp_doc = "KeyTable(key_info): a TermIndex's key_info, compiled for hits_from_collector.",
    .tp_basicsize = sizeof(KeyTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = KeyTable_new,
    .tp_dealloc = (destructor)KeyTable_dealloc,
};

/* ------------------------------------------------------------------ */
/* Sink: the candidate filter over key ids of a KeyTable                */

/* Collects the accepted candidates of one text: per term id its list of
 * spans, `order` listing the ids in first-found order. */
typedef struct {
    Filter f;
    KeyTable *t;
    PyObject **lists;
    Py_ssize_t *order, norder;
    int own;
} Sink;

static int
sink_open(Sink *s, KeyTable *t, PyObject *low, PyObject *canon)
{
    s->t = t;
    s->lists = NULL;
    s->order = NULL;
    s->norder = 0;
    s->own = 0;
    s->f.hits = NULL;
    if (filter_init(&s->f, low, canon) < 0)
        return -1;
    /* Creating objects may run the garbage collector, and so in theory Python
     * code that filters too: that one gets lists of its own. */
    s->own = !t->busy;
    if (s->own) {
        s->lists = t->lists;
        t->busy = 1;
    } else {
        s->lists = PyMem_Calloc(t->ntids + 1, sizeof(PyObject *));
    }
    s->order = PyMem_Malloc((t->ntids + 1) * sizeof(Py_ssize_t));
    if (s->lists == NULL || s->order == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* One candidate: key `key` of the table, its last character at `last`.
 * Keeps it for every term whose word boundaries, case and prefix rule it
 * meets. Returns -1 on error. */
static int
sink_accept(Sink *s, Py_ssize_t last, Py_ssize_t key)
{
    KeyTable *t = s->t;
    Filter *f = &s->f;
    Py_ssize_t length = t->length[key];
    Py_ssize_t start = last - length + 1;
    if (start < 0 || last >= f->n)
        return 0;
    if (start > 0 && is_alnum(PyUnicode_READ(f->kind_low, f->low, start - 1)))
        return 0;
    Py_ssize_t after = last + 1;
    int more = after < f->n && is_alnum(PyUnicode_READ(f->kind_low, f->low, after));
    Py_ssize_t stop = -1;
    for (Py_ssize_t e = t->first[key]; e < t->first[key + 1]; e++) {
        if (more && !t->prefix[e])
            continue;
        PyObject *exact = t->exact[e];
        if (exact != NULL) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(exact);
            if (len != length)
                continue;
            int kind = PyUnicode_KIND(exact);
            const void *xd = PyUnicode_DATA(exact);
            Py_ssize_t k = 0;
            while (k < len && PyUnicode_READ(kind, xd, k) ==
                                  PyUnicode_READ(f->kind_canon, f->canon, start + k))
                k++;
            if (k < len)
                continue;
        }
        if (stop < 0) {
            stop = after;
            while (more && stop < f->n && is_alnum(PyUnicode_READ(f->kind_low, f->low, stop)))
                stop++;
        }
        PyObject *span = make_span(start, stop);
        if (span == NULL)
            return -1;
        Py_ssize_t tid = t->tid[e];
        if (s->lists[tid] == NULL) {
            s->lists[tid] = PyList_New(1);
            if (s->lists[tid] == NULL) {
                Py_DECREF(span);
                return -1;
            }
            PyList_SET_ITEM(s->lists[tid], 0, span); /* steals */
            s->order[s->norder++] = tid;
        } else {
            int rc = PyList_Append(s->lists[tid], span);
            Py_DECREF(span);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

/* The hits (term id -> spans) if `ok`, else NULL; frees what the sink holds. */
static PyObject *
sink_close(Sink *s, int ok)
{
    PyObject *result = NULL;
    if (ok && s->f.hits != NULL) {
        Py_ssize_t i;
        for (i = 0; i < s->norder; i++) {
            PyObject *key = PyLong_FromSsize_t(s->order[i]);
            if (key == NULL)
                break;
            int rc = PyDict_SetItem(s->f.hits, key, s->lists[s->order[i]]);
            Py_DECREF(key);
            if (rc < 0)
                break;
        }
        if (i == s->norder)
            result = Py_NewRef(s->f.hits);
    }
    if (s->lists != NULL) {
        for (Py_ssize_t i = 0; i < s->norder; i++)
            Py_CLEAR(s->lists[s->order[i]]); /* NULL again for the next call */
        if (s->own)
            s->t->busy = 0;
        else
            PyMem_Free(s->lists);
    }
    PyMem_Free(s->order);
    Py_CLEAR(s->f.hits);
    return result;
}

PyDoc_STRVAR(hits_from_collector_doc,
"hits_from_collector(collector, data, low, canon, table) -> dict\n\n"
"Filter the candidates a Collector recorded while hyperscan scanned ``data``\n"
"(``low`` as UTF-8) with the key ids of ``table`` (a KeyTable): term id ->\n"
"[(start, stop)] in character offsets, unsorted, the terms in the order of\n"
"their first accepted candidate. Empties the collector.");

static PyObject *
hits_from_collector(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *ocollector, *low, *canon, *otable;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "O!y*UUO!:hits_from_collector", &CollectorType, &ocollector,
                          &data, &low, &canon, &KeyTableType, &otable))
        return NULL;
    Collector *c = (Collector *)ocollector;
    KeyTable *t = (KeyTable *)otable;
    Sink s;
    Py_ssize_t *chars = NULL;
    int ok = 0;
    if (sink_open(&s, t, low, canon) < 0)
        goto done;
    const unsigned char *bytes = data.buf;
    Py_ssize_t nbytes = data.len;
    if (nbytes != s.f.n) {
        /* Not ASCII: the character offset before each byte offset (UTF-8
         * continuation bytes, 0b10xxxxxx, start no character). */
        chars = PyMem_Malloc((nbytes + 1) * sizeof(Py_ssize_t));
        if (chars == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        Py_ssize_t count = 0;
        for (Py_ssize_t b = 0; b < nbytes; b++) {
            chars[b] = count;
            if ((bytes[b] & 0xC0) != 0x80)
                count++;
        }
        chars[nbytes] = count;
        /* The Python code sorts the candidates here (to count continuation
         * bytes in one pass); the terms' order in the result follows it. */
        qsort(c->found, c->n, sizeof(Candidate), candidate_order);
    }
    for (Py_ssize_t i = 0; i < c->n; i++) {
        unsigned long long end = c->found[i].end;
        unsigned int key = c->found[i].key;
        if (key >= (unsigned long long)t->nkeys || end > (unsigned long long)nbytes || end == 0) {
            PyErr_SetString(PyExc_ValueError, "candidate out of range");
            goto done;
        }
        if (sink_accept(&s, (chars ? chars[end] : (Py_ssize_t)end) - 1, key) < 0)
            goto done;
    }
    ok = 1;
done:
    c->n = 0;
    PyMem_Free(chars);
    PyBuffer_Release(&data);
    return sink_close(&s, ok);
}

/* ------------------------------------------------------------------ */
/* WordTrie: the keys in a trie, walked from each word start            */

/* Every key must begin where a word begins (the filter drops the others), so
 * instead of an automaton that reports every key everywhere, the keys go in a
 * trie that is walked from each position not preceded by a letter or digit:
 * what it reports has passed the start check already, and nothing crosses a
 * callback.
 *
 * The walk's cost is memory latency, one node per character, so the trie is
 * laid out breadth first: the nodes near the root, which nearly every walk
 * visits, lie together, and a node's children are consecutive (a child is
 * its parent's `first` plus its rank, found in `chars`). The root's children
 * for the first ROOT_DIRECT code points (ASCII and Latin with diacritics) are
 * in a plain array. While building, the edges live in a hash table keyed by
 * (node, character). */
#define ROOT_DIRECT 0x250
#define NO_EDGE UINT64_MAX

typedef struct {
    int32_t first;    /* the first child's id */
    int32_t count;    /* how many children */
    int32_t terminal; /* the id of the key ending here, or -1 */
} TrieNode;

typedef struct {
    PyObject_HEAD
    KeyTable *table;   /* the keys' (length, values), by key id */
    Py_ssize_t nnodes;
    TrieNode *nodes;   /* breadth first; node 0 is the root */
    Py_UCS4 *chars;    /* per node: the character on the edge into it */
    int32_t root[ROOT_DIRECT];
} WordTrie;

static inline int32_t
trie_child(const WordTrie *t, int32_t node, Py_UCS4 c)
{
    if (node == 0 && c < ROOT_DIRECT)
        return t->root[c];
    int32_t lo = t->nodes[node].first, hi = lo + t->nodes[node].count;
    const Py_UCS4 *chars = t->chars;
    while (hi - lo > 8) { /* children are sorted by character: narrow down */
        int32_t mid = lo + (hi - lo) / 2;
        if (chars[mid] < c)
            lo = mid + 1;
        else
            hi = mid + 1; /* c, if there, is at mid or before */
    }
    for (; lo < hi; lo++) {
        if (chars[lo] == c)
            return lo;
    }
    return -1;
}

/* The trie while it is built: edges in a hash table. */
typedef struct {
    uint64_t key; /* parent << 21 | character; NO_EDGE where empty */
    int32_t child;
} Edge;

typedef struct {
    Edge *edges;
    uint64_t mask;
    int shift;
    int32_t nnodes;
    int32_t *terminal;
} Draft;

static inline uint64_t
draft_slot(const Draft *d, uint64_t key)
{
    return (key * 0x9E3779B97F4A7C15ULL) >> d->shift;
}

/* The child of `node` for `c`, made if missing. */
static int32_t
draft_add(Draft *d, int32_t node, Py_UCS4 c)
{
    uint64_t key = ((uint64_t)node << 21) | c;
    uint64_t i = draft_slot(d, key);
    for (; d->edges[i].key != NO_EDGE; i = (i + 1) & d->mask) {
        if (d->edges[i].key == key)
            return d->edges[i].child;
    }
    int32_t child = d->nnodes++;
    d->terminal[child] = -1;
    d->edges[i].key = key;
    d->edges[i].child = child;
    return child;
}

static int
edge_order(const void *a, const void *b)
{
    uint64_t x = ((const Edge *)a)->key, y = ((const Edge *)b)->key;
    return (x > y) - (x < y);
}

/* Lays the draft out breadth first into `t`. Returns -1 (no memory). */
static int
trie_from_draft(WordTrie *t, Draft *d)
{
    int32_t n = d->nnodes;
    /* The edges sorted by (parent, character): each parent's are together. */
    Py_ssize_t nedges = 0;
    for (uint64_t i = 0; i <= d->mask; i++) {
        if (d->edges[i].key != NO_EDGE)
            d->edges[nedges++] = d->edges[i];
    }
    qsort(d->edges, nedges, sizeof(Edge), edge_order);
    int32_t *out_first = PyMem_Calloc(n + 1, sizeof(int32_t)); /* by draft id */
    int32_t *new_id = PyMem_Malloc(n * sizeof(int32_t));
    int32_t *queue = PyMem_Malloc(n * sizeof(int32_t)); /* draft ids, breadth first */
    t->nodes = PyMem_Malloc(n * sizeof(TrieNode));
    t->chars = PyMem_Malloc(n * sizeof(Py_UCS4));
    if (!out_first || !new_id || !queue || !t->nodes || !t->chars) {
        PyMem_Free(out_first);
        PyMem_Free(new_id);
        PyMem_Free(queue);
        PyErr_NoMemory();
        return -1;
    }
    /* out_first[p] .. out_first[p + 1] - 1: the sorted edges out of draft node p. */
    for (Py_ssize_t e = 0; e < nedges; e++)
        out_first[(d->edges[e].key >> 21) + 1]++;
    for (int32_t p = 0; p < n; p++)
        out_first[p + 1] += out_first[p];
    int32_t head = 0, tail = 0, next = 1;
    queue[tail++] = 0;
    new_id[0] = 0;
    t->chars[0] = 0;
    while (head < tail) {
        int32_t p = queue[head++];
        TrieNode *node = &t->nodes[new_id[p]];
        node->first = next;
        node->count = out_first[p + 1] - out_first[p];
        node->terminal = d->terminal[p];
        for (int32_t e = out_first[p]; e < out_first[p + 1]; e++) {
            int32_t child = d->edges[e].child;
            new_id[child] = next;
            t->chars[next] = (Py_UCS4)(d->edges[e].key & 0x1FFFFF);
            next++;
            queue[tail++] = child;
        }
    }
    t->nnodes = n;
    for (Py_UCS4 c = 0; c < ROOT_DIRECT; c++)
        t->root[c] = -1;
    for (int32_t i = t->nodes[0].first; i < t->nodes[0].first + t->nodes[0].count; i++) {
        if (t->chars[i] < ROOT_DIRECT)
            t->root[t->chars[i]] = i;
    }
    PyMem_Free(out_first);
    PyMem_Free(new_id);
    PyMem_Free(queue);
    return 0;
}

static void
WordTrie_dealloc(WordTrie *self)
{
    Py_XDECREF(self->table);
    PyMem_Free(self->nodes);
    PyMem_Free(self->chars);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
WordTrie_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *keys, *key_info;
    static char *kwlist[] = {"keys", "key_info", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!:WordTrie", kwlist, &PyTuple_Type, &keys,
                                     &PyTuple_Type, &key_info))
        return NULL;
    Py_ssize_t nkeys = PyTuple_GET_SIZE(keys);
    if (PyTuple_GET_SIZE(key_info) != nkeys) {
        PyErr_SetString(PyExc_ValueError, "keys and key_info must have the same length");
        return NULL;
    }
    Py_ssize_t chars = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyTuple_GET_ITEM(keys, k);
        if (!PyUnicode_Check(key) || PyUnicode_GET_LENGTH(key) == 0) {
            PyErr_SetString(PyExc_ValueError, "keys must be non-empty str");
            return NULL;
        }
        chars += PyUnicode_GET_LENGTH(key);
    }
    if (chars >= INT32_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "too many keys");
        return NULL;
    }
    WordTrie *self = (WordTrie *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Draft d = {NULL, 0, 0, 1, NULL};
    self->table = (KeyTable *)PyObject_CallOneArg((PyObject *)&KeyTableType, key_info);
    if (self->table == NULL)
        goto error;
    uint64_t slots = 16;
    int bits = 4;
    while (slots < 2 * (uint64_t)(chars + 1)) {
        slots *= 2;
        bits++;
    }
    d.mask = slots - 1;
    d.shift = 64 - bits;
    d.terminal = PyMem_Malloc((chars + 1) * sizeof(int32_t));
    d.edges = PyMem_Malloc(slots * sizeof(Edge));
    if (d.terminal == NULL || d.edges == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (uint64_t i = 0; i < slots; i++)
        d.edges[i].key = NO_EDGE;
    d.terminal[0] = -1;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyTuple_GET_ITEM(keys, k);
        Py_ssize_t len = PyUnicode_GET_LENGTH(key);
        if (len != self->table->length[k]) {
            PyErr_SetString(PyExc_ValueError, "a key's length differs from its key_info");
            goto error;
        }
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        int32_t node = 0;
        for (Py_ssize_t i = 0; i < len; i++)
            node = draft_add(&d, node, PyUnicode_READ(kind, data, i));
        if (d.terminal[node] >= 0) {
            PyErr_SetString(PyExc_ValueError, "keys must be distinct");
            goto error;
        }
        d.terminal[node] = (int32_t)k;
    }
    if (trie_from_draft(self, &d) < 0)
        goto error;
    PyMem_Free(d.edges);
    PyMem_Free(d.terminal);
    return (PyObject *)self;
error:
    PyMem_Free(d.edges);
    PyMem_Free(d.terminal);
    Py_DECREF(self);
    return NULL;
}

/* Walks the trie from every word start of `low`; calls `found(state, last,
 * key)` for each key found, by start and then length. */
typedef int (*trie_found)(void *state, Py_ssize_t last, Py_ssize_t key);

#define TRIE_WALK(TYPE)                                                         \
    do {                                                                        \
        const TYPE *d = (const TYPE *)data;                                     \
        int after_word = 0;                                                     \
        for (Py_ssize_t i = 0; i < n; i++) {                                    \
            Py_UCS4 c = d[i];                                                   \
            int word = is_alnum(c);                                             \
            if (!after_word) {                                                  \
                int32_t node = trie_child(self, 0, c);                          \
                Py_ssize_t j = i;                                               \
                while (node >= 0) {                                             \
                    int32_t key = self->nodes[node].terminal;                   \
                    if (key >= 0 && found(state, j, key) < 0)                   \
                        return -1;                                              \
                    if (++j >= n)                                               \
                        break;                                                  \
                    node = trie_child(self, node, d[j]);                        \
                }                                                               \
            }                                                                   \
            after_word = word;                                                  \
        }                                                                       \
    } while (0)

static int
trie_walk(WordTrie *self, PyObject *low, trie_found found, void *state)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(low);
    const void *data = PyUnicode_DATA(low);
    switch (PyUnicode_KIND(low)) {
    case PyUnicode_1BYTE_KIND:
        TRIE_WALK(Py_UCS1);
        break;
    case PyUnicode_2BYTE_KIND:
        TRIE_WALK(Py_UCS2);
        break;
    default:
        TRIE_WALK(Py_UCS4);
        break;
    }
    return 0;
}

static int
found_accept(void *state, Py_ssize_t last, Py_ssize_t key)
{
    return sink_accept((Sink *)state, last, key);
}

static PyObject *
WordTrie_find(WordTrie *self, PyObject *args)
{
    PyObject *low, *canon;
    if (!PyArg_ParseTuple(args, "UU:find", &low, &canon))
        return NULL;
    Sink s;
    int ok = sink_open(&s, self->table, low, canon) == 0 &&
             trie_walk(self, low, found_accept, &s) == 0;
    return sink_close(&s, ok);
}

static int
found_append(void *state, Py_ssize_t last, Py_ssize_t key)
{
    PyObject *pair = Py_BuildValue("(nn)", last, key);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append((PyObject *)state, pair);
    Py_DECREF(pair);
    return rc;
}

static PyObject *
WordTrie_candidates(WordTrie *self, PyObject *low)
{
    if (!PyUnicode_Check(low)) {
        PyErr_SetString(PyExc_TypeError, "candidates() takes a str");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out != NULL && trie_walk(self, low, found_append, out) < 0)
        Py_CLEAR(out);
    return out;
}

static PyObject *
WordTrie_nodes(WordTrie *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->nnodes);
}

static PyMethodDef WordTrie_methods[] = {
    {"find", (PyCFunction)WordTrie_find, METH_VARARGS,
     "find(low, canon) -> dict: term id -> [(start, stop)], as hits_from_collector."},
    {"candidates", (PyCFunction)WordTrie_candidates, METH_O,
     "candidates(low) -> [(last, key id)]: every key found at a word start, unfiltered."},
    {"nodes", (PyCFunction)WordTrie_nodes, METH_NOARGS, "How many nodes the trie has."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WordTrieType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor._speedups.WordTrie",
    .tp_doc = "WordTrie(keys, key_info): the keys in a trie walked from each word start.",
    .tp_basicsize = sizeof(WordTrie),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = WordTrie_new,
    .tp_dealloc = (destructor)WordTrie_dealloc,
    .tp_methods = WordTrie_methods,
};

PyDoc_STRVAR(hits_from_iter_doc,
"hits_from_iter(candidates, low, canon, table) -> dict\n\n"
"Filter (last, key id) candidates, as pyahocorasick's ``Automaton.iter``\n"
"yields them, with the key ids of ``table`` (a KeyTable): term id ->\n"
"[(start, stop)], unsorted, as hits_from_collector.");

static PyObject *
hits_from_iter(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *candidates, *low, *canon, *otable;
    if (!PyArg_ParseTuple(args, "OUUO!:hits_from_iter", &candidates, &low, &canon, &KeyTableType,
                          &otable))
        return NULL;
    KeyTable *t = (KeyTable *)otable;
    Sink s;
    PyObject *it = NULL, *item;
    int ok = 0;
    if (sink_open(&s, t, low, canon) < 0 || (it = PyObject_GetIter(candidates)) == NULL)
        goto done;
    while ((item = PyIter_Next(it)) != NULL) {
        Py_ssize_t last = -1, key = -1;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
            last = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
            key = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
        }
        Py_DECREF(item);
        if (PyErr_Occurred())
            goto done;
        if (key < 0 || key >= t->nkeys || last < 0) {
            PyErr_SetString(PyExc_ValueError, "candidates must be (last, key id) pairs");
            goto done;
        }
        if (sink_accept(&s, last, key) < 0)
            goto done;
    }
    ok = !PyErr_Occurred();
done:
    Py_XDECREF(it);
    return sink_close(&s, ok);
}

/* ------------------------------------------------------------------ */
/* Evidence                                                             */

PyDoc_STRVAR(best_sentence_doc,
"best_sentence(starts, occurrences, size) -> (index, focus) | None\n\n"
"``starts``: sorted sentence starts; ``occurrences``: per term, spans sorted\n"
"by start. The sentence (index into starts) holding the most distinct terms,\n"
"the earliest on a tie, and the first occurrence start in it; None when no\n"
"occurrence is in a sentence. An occurrence belongs to the last sentence\n"
"starting at or before it; ``size`` is the text's length.");

static int
read_starts(PyObject *starts, Py_ssize_t **out, Py_ssize_t *n)
{
    if (!PyList_Check(starts)) {
        PyErr_SetString(PyExc_TypeError, "starts must be a list");
        return -1;
    }
    *n = PyList_GET_SIZE(starts);
    *out = PyMem_Malloc((*n + 1) * sizeof(Py_ssize_t));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        (*out)[i] = PyLong_AsSsize_t(PyList_GET_ITEM(starts, i));
        if ((*out)[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(*out);
            return -1;
        }
    }
    return 0;
}

/* bisect.bisect_right(starts, x) */
static Py_ssize_t
bisect_right(const Py_ssize_t *a, Py_ssize_t n, Py_ssize_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (x < a[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int
span_start(PyObject *span, Py_ssize_t *start)
{
    if (!PyTuple_Check(span) || PyTuple_GET_SIZE(span) < 1) {
        PyErr_SetString(PyExc_TypeError, "spans must be tuples");
        return -1;
    }
    *start = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 0));
    return (*start == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* best_sentence over `n` sentence starts in a C array. */
static PyObject *
best_sentence_in(const Py_ssize_t *starts, Py_ssize_t n, PyObject *occurrences, Py_ssize_t size)
{
    Py_ssize_t *counts = NULL, *seen = NULL;
    PyObject *result = NULL;
    /* counts[k]: distinct terms in the sentence numbered k + 1 by bisect (0: before the first). */
    counts = PyMem_Calloc(n + 1, sizeof(Py_ssize_t));
    if (counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* seen[k]: the last term counted in that sentence, so each term counts once per
     * sentence whatever the order of its spans (they may be joined from two groups). */
    seen = PyMem_Malloc((n + 1) * sizeof(Py_ssize_t));
    if (seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k <= n; k++)
        seen[k] = -1;
    Py_ssize_t nterms = PyList_GET_SIZE(occurrences);
    for (Py_ssize_t t = 0; t < nterms; t++) {
        PyObject *spans = PyList_GET_ITEM(occurrences, t);
        if (!PyList_Check(spans)) {
            PyErr_SetString(PyExc_TypeError, "occurrences must be lists of spans");
            goto done;
        }
        Py_ssize_t m = PyList_GET_SIZE(spans);
        for (Py_ssize_t j = 0; j < m; j++) {
            Py_ssize_t start;
            if (span_start(PyList_GET_ITEM(spans, j), &start) < 0)
                goto done;
            Py_ssize_t k = bisect_right(starts, n, start);
            if (seen[k] != t) {
                counts[k]++;
                seen[k] = t;
            }
        }
    }
    Py_ssize_t best = -1, most = 0;
    for (Py_ssize_t k = 1; k <= n; k++) {
        if (counts[k] > most) {
            most = counts[k];
            best = k - 1;
        }
    }
    if (best < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    Py_ssize_t s = starts[best];
    Py_ssize_t after = best + 1 < n ? starts[best + 1] : size + 1;
    Py_ssize_t focus = -1;
    for (Py_ssize_t t = 0; t < nterms; t++) {
        PyObject *spans = PyList_GET_ITEM(occurrences, t);
        Py_ssize_t m = PyList_GET_SIZE(spans);
        for (Py_ssize_t j = 0; j < m; j++) {
            Py_ssize_t start;
            if (span_start(PyList_GET_ITEM(spans, j), &start) < 0)
                goto done;
            if (start >= s && start < after && (focus < 0 || start < focus))
                focus = start;
        }
    }
    result = Py_BuildValue("(nn)", best, focus);
done:
    PyMem_Free(counts);
    PyMem_Free(seen);
    return result;
}

static PyObject *
best_sentence(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *ostarts, *occurrences;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "O!O!n:best_sentence", &PyList_Type, &ostarts, &PyList_Type,
                          &occurrences, &size))
        return NULL;
    Py_ssize_t *starts = NULL, n = 0;
    if (read_starts(ostarts, &starts, &n) < 0)
        return NULL;
    PyObject *result = best_sentence_in(starts, n, occurrences, size);
    PyMem_Free(starts);
    return result;
}

/* ------------------------------------------------------------------ */
/* Sentences                                                            */

PyDoc_STRVAR(split_sentences_doc,
"split_sentences(text, abbreviations, months) -> list[(start, end)]\n\n"
"monitor.match.split_sentences in C: the same cuts, decided the same way\n"
"(``abbreviations`` and ``months`` are its frozensets of casefolded words).");

static int
is_end_char(Py_UCS4 c)
{
    return c == '.' || c == '!' || c == '?' || c == 0x2026 || c == '\n';
}

static int
is_more_end(Py_UCS4 c)
{
    return c == '.' || c == '!' || c == '?' || c == 0x2026;
}

static int
is_closer(Py_UCS4 c)
{
    return c == '"' || c == '\'' || c == 0xbb || c == 0xab || c == 0x201c || c == 0x201d ||
           c == 0x2018 || c == 0x2019 || c == ')' || c == ']';
}

/* Whether set (a frozenset of str) holds text[a:b].casefold(): -1 on error. */
static int
casefolded_in(PyObject *text, Py_ssize_t a, Py_ssize_t b, PyObject *set)
{
    PyObject *word = PyUnicode_Substring(text, a, b);
    if (word == NULL)
        return -1;
    PyObject *folded = PyObject_CallMethod(word, "casefold", NULL);
    Py_DECREF(word);
    if (folded == NULL)
        return -1;
    int rc = PySet_Contains(set, folded);
    Py_DECREF(folded);
    return rc;
}

static PyObject *
split_sentences(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *text, *abbreviations, *months;
    if (!PyArg_ParseTuple(args, "UO!O!:split_sentences", &text, &PyFrozenSet_Type,
                          &abbreviations, &PyFrozenSet_Type, &months))
        return NULL;
    int kind = PyUnicode_KIND(text);
    const void *d = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
#define AT(i) PyUnicode_READ(kind, d, (i))
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t cut = 0; /* the last cut */
    Py_ssize_t i = 0;
    for (;;) {
        /* The next sentence end at or after i (the regex _END), ending at e. */
        Py_ssize_t e = -1;
        while (i < n) {
            Py_UCS4 c = AT(i);
            if (is_end_char(c)) {
                if (c == '\n') {
                    e = i + 1;
                    break;
                }
                Py_ssize_t l = i + 1;
                while (l < n && is_more_end(AT(l)))
                    l++;
                while (l < n && is_closer(AT(l)))
                    l++;
                if (l < n && Py_UNICODE_ISSPACE(AT(l))) {
                    e = l;
                    break;
                }
            }
            i++;
        }
        Py_ssize_t next_cut;
        if (e < 0) {
            next_cut = n;
        } else {
            Py_ssize_t a = i;
            i = e; /* the next search starts where this match ended */
            /* The following word: after whitespace, up to the next whitespace. */
            Py_ssize_t f0 = e;
            while (f0 < n && Py_UNICODE_ISSPACE(AT(f0)))
                f0++;
            Py_ssize_t f1 = f0;
            while (f1 < n && !Py_UNICODE_ISSPACE(AT(f1)))
                f1++;
            if (f1 > f0 && Py_UNICODE_ISLOWER(AT(f0)))
                continue;
            if (AT(a) == '.' && !(a + 1 < n && AT(a + 1) == '.')) {
                int six_letters = a >= 6;
                for (Py_ssize_t k = a - 6; six_letters && k < a; k++)
                    six_letters = Py_UNICODE_ISALPHA(AT(k));
                if (!six_letters) {
                    /* The word before the period: up to 7 characters of \w. */
                    Py_ssize_t w = a;
                    Py_ssize_t floor = a >= 7 ? a - 7 : 0;
                    while (w > floor && (is_alnum(AT(w - 1)) || AT(w - 1) == '_'))
                        w--;
                    Py_ssize_t len = a - w;
                    if (len == 1 && Py_UNICODE_ISALPHA(AT(w)))
                        continue; /* an initial, or U.S. */
                    if (len) {
                        int rc = casefolded_in(text, w, a, abbreviations);
                        if (rc < 0)
                            goto error;
                        if (rc)
                            continue;
                    }
                    if (len && len <= 2) {
                        int digits = 1;
                        for (Py_ssize_t k = w; digits && k < a; k++)
                            digits = Py_UNICODE_ISDIGIT(AT(k));
                        if (digits) {
                            int rc = casefolded_in(text, f0, f1, months);
                            if (rc < 0)
                                goto error;
                            if (rc)
                                continue;
                        }
                    }
                }
            }
            next_cut = e;
        }
        /* The sentence from the last cut to this one, whitespace trimmed. */
        Py_ssize_t s0 = cut, s1 = next_cut;
        while (s0 < s1 && Py_UNICODE_ISSPACE(AT(s0)))
            s0++;
        while (s1 > s0 && Py_UNICODE_ISSPACE(AT(s1 - 1)))
            s1--;
        if (s1 > s0) {
            PyObject *span = make_span(s0, s1);
            if (span == NULL)
                goto error;
            int rc = PyList_Append(out, span);
            Py_DECREF(span);
            if (rc < 0)
                goto error;
        }
        cut = next_cut;
        if (e < 0)
            break;
    }
#undef AT
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Whitespace                                                           */

PyDoc_STRVAR(untidy_doc,
"untidy(text) -> bool\n\n"
"Whether monitor.match._clean must rewrite the whitespace of ``text``: it\n"
"starts or ends with whitespace, has whitespace other than space and line\n"
"break, or two whitespace characters in a row.");

static PyObject *
untidy(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "text must be str");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    const void *d = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int previous = 1; /* "whitespace before the text": a leading space is untidy */
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, d, i);
        /* Most characters are letters: one comparison settles them. */
        if (c > ' ' && c < 0x80) {
            previous = 0;
            continue;
        }
        if (Py_UNICODE_ISSPACE(c)) {
            if (previous || (c != ' ' && c != '\n'))
                Py_RETURN_TRUE;
            previous = 1;
        } else {
            previous = 0;
        }
    }
    if (n && previous)
        Py_RETURN_TRUE; /* ends with whitespace */
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(nfc_stable_doc,
"nfc_stable(text) -> bool\n\n"
"True when NFC leaves ``text`` as it is, for certain: every character is\n"
"below U+0300 or in U+2002..U+20CF (punctuation, super- and subscripts,\n"
"currency signs), where none decomposes, has a combining class or composes\n"
"with a neighbour. False: ask unicodedata.normalize.");

static PyObject *
nfc_stable(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "text must be str");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    if (kind == PyUnicode_1BYTE_KIND)
        Py_RETURN_TRUE; /* Latin-1 only: all below U+0300 */
    const void *d = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, d, i);
        if (c < 0x300 || (c >= 0x2002 && c < 0x20D0))
            continue;
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* ------------------------------------------------------------------ */
/* Rule evaluation helpers                                              */

PyDoc_STRVAR(by_group_doc,
"by_group(hits, term_groups) -> dict\n\n"
"monitor.match._Context._by_group: group key -> {term id: spans}, for every\n"
"term id of ``hits`` and every key ``term_groups[term id]`` (a tuple) lists.");

static PyObject *
by_group(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *hits, *term_groups;
    if (!PyArg_ParseTuple(args, "O!O!:by_group", &PyDict_Type, &hits, &PyDict_Type, &term_groups))
        return NULL;
    PyObject *grouped = PyDict_New();
    if (grouped == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *tid, *spans;
    while (PyDict_Next(hits, &pos, &tid, &spans)) {
        PyObject *keys = PyDict_GetItemWithError(term_groups, tid);
        if (keys == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, tid);
            goto error;
        }
        if (!PyTuple_Check(keys)) {
            PyErr_SetString(PyExc_TypeError, "term_groups values must be tuples");
            goto error;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); i++) {
            PyObject *key = PyTuple_GET_ITEM(keys, i);
            PyObject *group = PyDict_GetItemWithError(grouped, key);
            if (group == NULL) {
                if (PyErr_Occurred())
                    goto error;
                group = PyDict_New();
                if (group == NULL)
                    goto error;
                int rc = PyDict_SetItem(grouped, key, group);
                Py_DECREF(group); /* grouped holds it */
                if (rc < 0)
                    goto error;
            }
            if (PyDict_SetItem(group, tid, spans) < 0)
                goto error;
        }
    }
    return grouped;
error:
    Py_DECREF(grouped);
    return NULL;
}

PyDoc_STRVAR(terms_in_order_doc,
"terms_in_order(spans, written, shown) -> tuple[str, ...]\n\n"
"The terms of ``spans`` (term id -> spans sorted by start) as ``shown[id]``, by\n"
"first start, then ``written[id]``, then their order in ``spans``; each once.");

typedef struct {
    Py_ssize_t start;
    Py_ssize_t i;
    PyObject *written; /* borrowed */
    PyObject *shown;   /* borrowed */
} Keyed;

static int keyed_error;

static int
keyed_order(const void *a, const void *b)
{
    const Keyed *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->written != y->written) {
        int c = PyUnicode_Compare(x->written, y->written);
        if (c == -1 && PyErr_Occurred())
            keyed_error = 1;
        if (c)
            return c;
    }
    return (x->i > y->i) - (x->i < y->i);
}

static PyObject *
terms_in_order(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *spans, *written, *shown;
    if (!PyArg_ParseTuple(args, "O!O!O!:terms_in_order", &PyDict_Type, &spans, &PyTuple_Type,
                          &written, &PyTuple_Type, &shown))
        return NULL;
    Py_ssize_t n = PyDict_GET_SIZE(spans);
    Keyed *items = PyMem_Malloc((n + 1) * sizeof(Keyed));
    if (items == NULL)
        return PyErr_NoMemory();
    PyObject *seen = NULL, *result = NULL;
    Py_ssize_t pos = 0, k = 0;
    PyObject *tid, *found;
    while (PyDict_Next(spans, &pos, &tid, &found)) {
        Py_ssize_t t = PyLong_AsSsize_t(tid);
        if (t == -1 && PyErr_Occurred())
            goto done;
        if (t < 0 || t >= PyTuple_GET_SIZE(written) || t >= PyTuple_GET_SIZE(shown) ||
            !PyList_Check(found) || PyList_GET_SIZE(found) == 0) {
            PyErr_SetString(PyExc_ValueError, "bad term id or spans");
            goto done;
        }
        Py_ssize_t start;
        if (span_start(PyList_GET_ITEM(found, 0), &start) < 0)
            goto done;
        items[k].start = start;
        items[k].i = k;
        items[k].written = PyTuple_GET_ITEM(written, t);
        items[k].shown = PyTuple_GET_ITEM(shown, t);
        if (!PyUnicode_Check(items[k].written) || !PyUnicode_Check(items[k].shown)) {
            PyErr_SetString(PyExc_TypeError, "written and shown must hold str");
            goto done;
        }
        k++;
    }
    keyed_error = 0;
    qsort(items, k, sizeof(Keyed), keyed_order);
    if (keyed_error)
        goto done;
    /* Each shown text once, first place kept (dict.fromkeys). */
    seen = PySet_New(NULL);
    PyObject *list = PyList_New(0);
    if (seen == NULL || list == NULL) {
        Py_XDECREF(list);
        goto done;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        int has = PySet_Contains(seen, items[j].shown);
        if (has < 0 || (!has && (PySet_Add(seen, items[j].shown) < 0 ||
                                 PyList_Append(list, items[j].shown) < 0))) {
            Py_DECREF(list);
            goto done;
        }
    }
    result = PyList_AsTuple(list);
    Py_DECREF(list);
done:
    Py_XDECREF(seen);
    PyMem_Free(items);
    return result;
}

PyDoc_STRVAR(single_groups_doc,
"single_groups(hits, slots_of, nslots, written, shown, starts, size) -> list\n\n"
"For rules that are one group of terms (monitor.match's shortcut), numbered\n"
"0 .. nslots - 1: ``slots_of[term id]`` lists the rules whose group holds the\n"
"term. Per rule, None if none of its terms occurs in ``hits``, else\n"
"(terms_in_order(...), *best_sentence(...) or (-1, -1)) over its group's\n"
"occurrences, taken in the order of ``hits`` as by_group takes them.");

static PyObject *
single_groups(PyObject *module, PyObject *args)
{
    PyObject *hits, *slots_of, *written, *shown, *ostarts;
    Py_ssize_t nslots, size;
    if (!PyArg_ParseTuple(args, "O!O!nO!O!O!n:single_groups", &PyDict_Type, &hits,
                          &PyTuple_Type, &slots_of, &nslots, &PyTuple_Type, &written,
                          &PyTuple_Type, &shown, &PyList_Type, &ostarts, &size))
        return NULL;
    if (nslots < 0) {
        PyErr_SetString(PyExc_ValueError, "nslots must not be negative");
        return NULL;
    }
    Py_ssize_t *starts = NULL, n = 0;
    PyObject **groups = PyMem_Calloc(nslots + 1, sizeof(PyObject *));
    PyObject *result = NULL;
    if (groups == NULL)
        return PyErr_NoMemory();
    if (read_starts(ostarts, &starts, &n) < 0)
        goto done;
    Py_ssize_t pos = 0;
    PyObject *tid, *spans;
    while (PyDict_Next(hits, &pos, &tid, &spans)) {
        Py_ssize_t t = PyLong_AsSsize_t(tid);
        if (t == -1 && PyErr_Occurred())
            goto done;
        if (t < 0 || t >= PyTuple_GET_SIZE(slots_of)) {
            PyErr_SetString(PyExc_ValueError, "term id out of range");
            goto done;
        }
        PyObject *slots = PyTuple_GET_ITEM(slots_of, t);
        if (!PyTuple_Check(slots)) {
            PyErr_SetString(PyExc_TypeError, "slots_of must hold tuples");
            goto done;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(slots); i++) {
            Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(slots, i));
            if (slot == -1 && PyErr_Occurred())
                goto done;
            if (slot < 0 || slot >= nslots) {
                PyErr_SetString(PyExc_ValueError, "slot out of range");
                goto done;
            }
            if (groups[slot] == NULL && (groups[slot] = PyDict_New()) == NULL)
                goto done;
            if (PyDict_SetItem(groups[slot], tid, spans) < 0)
                goto done;
        }
    }
    result = PyList_New(nslots);
    if (result == NULL)
        goto done;
    for (Py_ssize_t slot = 0; slot < nslots; slot++) {
        PyObject *item;
        if (groups[slot] == NULL) {
            item = Py_NewRef(Py_None);
        } else {
            PyObject *targs = PyTuple_Pack(3, groups[slot], written, shown);
            PyObject *terms = targs ? terms_in_order(module, targs) : NULL;
            Py_XDECREF(targs);
            PyObject *values = terms ? PyDict_Values(groups[slot]) : NULL;
            PyObject *best = values ? best_sentence_in(starts, n, values, size) : NULL;
            Py_XDECREF(values);
            if (best == NULL) {
                Py_XDECREF(terms);
                Py_CLEAR(result);
                goto done;
            }
            if (best == Py_None)
                item = Py_BuildValue("(Nnn)", terms, (Py_ssize_t)-1, (Py_ssize_t)-1);
            else
                item = Py_BuildValue("(NOO)", terms, PyTuple_GET_ITEM(best, 0),
                                     PyTuple_GET_ITEM(best, 1));
            Py_DECREF(best);
            if (item == NULL) {
                Py_CLEAR(result);
                goto done;
            }
        }
        PyList_SET_ITEM(result, slot, item);
    }
done:
    for (Py_ssize_t slot = 0; slot < nslots; slot++)
        Py_XDECREF(groups[slot]);
    PyMem_Free(groups);
    PyMem_Free(starts);
    return result;
}

/* ------------------------------------------------------------------ */
/* Lower case                                                           */

#if PY_VERSION_HEX < 0x030D0000
/* _PyUnicode_ToLowerFull is what str.lower() maps each character with; newer
 * Pythons no longer export it, and monitor.match then lowers in Python. */
#define HAVE_LOWER 1

PyDoc_STRVAR(lower_doc,
"lower(text) -> str | None\n\n"
"monitor.rules.lower_text(text): each character lower-cased, one whose lower\n"
"case is longer (U+0130) kept as it is; None if ``text`` holds a capital\n"
"sigma, whose lower case depends on its neighbours (ask Python then).");

static PyObject *
lower(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "text must be str");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    const void *d = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_UCS4 *out = PyMem_Malloc((n + 1) * sizeof(Py_UCS4));
    if (out == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, d, i);
        if (c < 128) {
            out[i] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x3A3) {
            PyMem_Free(out);
            Py_RETURN_NONE;
        } else {
            Py_UCS4 mapped[3];
            out[i] = _PyUnicode_ToLowerFull(c, mapped) == 1 ? mapped[0] : c;
        }
    }
    PyObject *result = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, n);
    PyMem_Free(out);
    return result;
}
#endif

/* ------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"hits_from_collector", hits_from_collector, METH_VARARGS, hits_from_collector_doc},
    {"hits_from_iter", hits_from_iter, METH_VARARGS, hits_from_iter_doc},
    {"best_sentence", best_sentence, METH_VARARGS, best_sentence_doc},
    {"split_sentences", split_sentences, METH_VARARGS, split_sentences_doc},
    {"untidy", untidy, METH_O, untidy_doc},
    {"nfc_stable", nfc_stable, METH_O, nfc_stable_doc},
    {"by_group", by_group, METH_VARARGS, by_group_doc},
    {"terms_in_order", terms_in_order, METH_VARARGS, terms_in_order_doc},
    {"single_groups", single_groups, METH_VARARGS, single_groups_doc},
#ifdef HAVE_LOWER
    {"lower", lower, METH_O, lower_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "monitor._speedups",
    .m_doc = "Optional C accelerator for monitor.match (same results as the pure-Python code).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    for (Py_UCS4 c = 0; c < 128; c++)
        ascii_alnum[c] = (char)Py_UNICODE_ISALNUM(c);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* PyModule_AddType readies each type and adds it under its short name. */
    PyTypeObject *types[] = {&CollectorType, &KeyTableType, &WordTrieType};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (PyModule_AddType(m, types[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
