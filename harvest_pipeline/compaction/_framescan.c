/* Strict scanner of the collector's combined-stream frame records (optional; compaction works without it).
 *
 * scan(data, offsets, rows, levels, int_mask, dec_mask) reads line r = data[offsets[r]:offsets[r + 1]] (without its
 * final newline) for each r in rows (offsets and rows: int64 buffers) and accepts a line only if it is an exact
 * subset of JSON that DuckDB's json_extract_string reads the same way byte for byte:
 *   - one object, no whitespace, every byte printable ASCII, no backslash anywhere (so no escapes);
 *   - top-level keys t, c, n, k, s, symbol, f; f holds stream and an object data with the payload keys below;
 *   - a known key appears at most once and holds a string, an integer of at most 19 digits (18 when negative) or
 *     true/false (its text is what json_extract_string returns); unknown keys hold such scalars or a JSON number;
 *   - a slot of int_mask (bit k for KEYS[k]) holds an integer that fits int64, and a slot of dec_mask a string
 *     that is a plain decimal exact in DECIMAL(18, 8): "(0|[1-9][0-9]{0,9})(.[0-9]{1,8})?";
 *   - with levels=True, data's b and a are both lists of ["price", "qty"] pairs of such decimals, price > 0;
 *     with levels=False a list anywhere rejects the line.
 * Every other line is rejected and left to the SQL path, which knows every rule and quarantine reason.
 *
 * Returns (accepted, combined, slots, levels): accepted one byte per row; the rest only for the m accepted lines, in
 * order: combined one byte each (the line contains ',"f":{"stream":'); slots one (offsets, values, valid) per KEYS
 * entry: text (offsets int32[m+1]), or int64[m] values with offsets None (a decimal scaled by 1e8: Arrow's
 * decimal64(18, 8)); valid is a little-endian bitmap; levels, only with levels=True, (offsets int32[m+1], price
 * decimal128[], qty decimal128[]) of scale 8, for b then a (the table's own type: they go to Parquet as they are).
 * Each is a read-only buffer the scan filled (no copy).
 *
 * classify(data, offsets) gives, per line data[offsets[i]:offsets[i + 1]], the fast path's guess of its kind and
 * whether it may be a connect record (fast.guess_kinds).
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    K_T, K_C, K_N, K_K, K_S, K_SYMBOL,
    P_E_LOWER, P_E, P_T, P_S, P_A_LOWER, P_P, P_Q, P_F, P_L, P_M, P_U_UPPER, P_U, P_PU, P_B_LOWER, P_B, P_A,
    NKEYS
};
static const char *const KEY_NAMES[NKEYS] = {
    "$.t", "$.c", "$.n", "$.k", "$.s", "$.symbol",
    "$.f.data.e", "$.f.data.E", "$.f.data.T", "$.f.data.s", "$.f.data.a", "$.f.data.p", "$.f.data.q",
    "$.f.data.f", "$.f.data.l", "$.f.data.m", "$.f.data.U", "$.f.data.u", "$.f.data.pu", "$.f.data.b",
    "$.f.data.B", "$.f.data.A",
};
/* Record keys (top_key): t c n k s symbol; payload keys (data_key): e E T s a p q f l m U u pu b B A. */
#define MAX_INT_DIGITS 19 /* below 1e19: yyjson reads it as an integer and writes the same digits */
#define MAX_LEVEL_INT_DIGITS 10
#define MAX_LEVEL_DECIMALS 8
#define PREFETCH_AHEAD 4
#define PREFETCH_CACHE_LINES 4

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t room) {
    if (b->len + room <= b->cap) return 1;
    Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + room) cap *= 2;
    char *grown = realloc(b->data, (size_t)cap);
    if (!grown) return 0;
    b->data = grown;
    b->cap = cap;
    return 1;
}

static int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    if (b->len + n > b->cap && !buf_reserve(b, n)) return 0;
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 1;
}

typedef struct {
    const char *slot_at[NKEYS]; /* first: scan zeroes only this */
    const char *p, *end;
    Py_ssize_t slot_len[NKEYS];
    char slot_token[NKEYS]; /* 's' string, 'i' integer, 'b' boolean */
    int want_levels;
    int frame_seen, data_seen;
    int combined; /* the line contains ,"f":{"stream": */
    int levels_seen[2];
    Buf *prices[2], *qtys[2];
    int out_of_memory;
} Line;

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A string without escapes, control or non-ASCII bytes; at and len: its content. */
static int read_string(Line *ln, const char **at, Py_ssize_t *len) {
    if (ln->p >= ln->end || *ln->p != '"') return 0;
    const char *start = ++ln->p;
    while (ln->p < ln->end) {
        unsigned char c = (unsigned char)*ln->p;
        if (c == '"') {
            *at = start;
            *len = ln->p - start;
            ln->p++;
            return 1;
        }
        if (c == '\\' || c < 0x20 || c >= 0x7f) return 0;
        ln->p++;
    }
    return 0;
}

static int at_value_end(const Line *ln) {
    return ln->p < ln->end && (*ln->p == ',' || *ln->p == '}' || *ln->p == ']');
}

/* -?(0|[1-9][0-9]*) with at most MAX_INT_DIGITS digits (one fewer when negative: int64), then a delimiter. */
static int read_int(Line *ln, const char **at, Py_ssize_t *len) {
    const char *start = ln->p;
    if (ln->p < ln->end && *ln->p == '-') ln->p++;
    const char *digits = ln->p;
    if (ln->p >= ln->end || !is_digit(*ln->p)) return 0;
    if (*ln->p == '0') {
        ln->p++;
        if (digits != start) return 0; /* -0 */
    } else {
        while (ln->p < ln->end && is_digit(*ln->p)) ln->p++;
    }
    if (ln->p - digits > MAX_INT_DIGITS - (digits != start) || !at_value_end(ln)) return 0;
    *at = start;
    *len = ln->p - start;
    return 1;
}

static int read_word(Line *ln, const char *word, const char **at, Py_ssize_t *len) {
    size_t n = strlen(word);
    if ((size_t)(ln->end - ln->p) < n || memcmp(ln->p, word, n) != 0) return 0;
    *at = ln->p;
    *len = (Py_ssize_t)n;
    ln->p += n;
    return at_value_end(ln);
}

/* The text json_extract_string returns for a string, a short integer or a boolean. */
static int read_scalar(Line *ln, const char **at, Py_ssize_t *len) {
    if (ln->p >= ln->end) return 0;
    char c = *ln->p;
    if (c == '"') return read_string(ln, at, len);
    if (c == 't') return read_word(ln, "true", at, len);
    if (c == 'f') return read_word(ln, "false", at, len);
    return read_int(ln, at, len);
}

/* Any JSON number (an unknown key's value is skipped, not returned). */
static int skip_number(Line *ln) {
    if (ln->p < ln->end && *ln->p == '-') ln->p++;
    if (ln->p >= ln->end || !is_digit(*ln->p)) return 0;
    if (*ln->p == '0') ln->p++;
    else while (ln->p < ln->end && is_digit(*ln->p)) ln->p++;
    if (ln->p < ln->end && *ln->p == '.') {
        ln->p++;
        if (ln->p >= ln->end || !is_digit(*ln->p)) return 0;
        while (ln->p < ln->end && is_digit(*ln->p)) ln->p++;
    }
    if (ln->p < ln->end && (*ln->p == 'e' || *ln->p == 'E')) {
        ln->p++;
        if (ln->p < ln->end && (*ln->p == '+' || *ln->p == '-')) ln->p++;
        if (ln->p >= ln->end || !is_digit(*ln->p)) return 0;
        while (ln->p < ln->end && is_digit(*ln->p)) ln->p++;
    }
    return at_value_end(ln);
}

static int skip_unknown(Line *ln) {
    const char *at;
    Py_ssize_t len;
    if (ln->p >= ln->end) return 0;
    char c = *ln->p;
    if (c == '"') return read_string(ln, &at, &len);
    if (c == 't') return read_word(ln, "true", &at, &len);
    if (c == 'f') return read_word(ln, "false", &at, &len);
    if (c == 'n') return read_word(ln, "null", &at, &len);
    return skip_number(ln);
}

static int expect(Line *ln, char c) {
    if (ln->p >= ln->end || *ln->p != c) return 0;
    ln->p++;
    return 1;
}

/* "(0|[1-9][0-9]{0,9})(.[0-9]{1,8})?" at p (before end) as an integer scaled by 1e8; *stop: where it ends. */
static int parse_decimal(const char *p, const char *end, int64_t *out, const char **stop) {
    int64_t whole = 0, fraction = 0;
    if (p >= end || !is_digit(*p)) return 0;
    if (*p == '0') {
        p++;
    } else {
        for (int digits = 0; p < end && is_digit(*p); p++) {
            if (++digits > MAX_LEVEL_INT_DIGITS) return 0;
            whole = whole * 10 + (*p - '0');
        }
    }
    int decimals = 0;
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit(*p); p++) {
            if (++decimals > MAX_LEVEL_DECIMALS) return 0;
            fraction = fraction * 10 + (*p - '0');
        }
        if (decimals == 0) return 0;
    }
    for (int i = decimals; i < MAX_LEVEL_DECIMALS; i++) fraction *= 10;
    *out = whole * 100000000LL + fraction;
    *stop = p;
    return 1;
}

/* A quoted plain decimal (parse_decimal). */
static int read_decimal(Line *ln, int64_t *out) {
    const char *stop;
    if (!expect(ln, '"') || !parse_decimal(ln->p, ln->end, out, &stop)) return 0;
    ln->p = stop;
    return expect(ln, '"');
}

/* [["price","qty"],...] appended to the side's buffers; prices must be > 0. */
static int read_levels(Line *ln, int side) {
    if (ln->levels_seen[side]) return 0;
    ln->levels_seen[side] = 1;
    if (!expect(ln, '[')) return 0;
    if (ln->p < ln->end && *ln->p == ']') {
        ln->p++;
        return at_value_end(ln);
    }
    for (;;) {
        int64_t price, qty;
        if (!expect(ln, '[') || !read_decimal(ln, &price) || !expect(ln, ',') || !read_decimal(ln, &qty) ||
            !expect(ln, ']'))
            return 0;
        if (price <= 0) return 0;
        int64_t price128[2] = {price, 0}, qty128[2] = {qty, 0}; /* decimal128, little-endian; both >= 0 */
        if (!buf_put(ln->prices[side], price128, 16) || !buf_put(ln->qtys[side], qty128, 16)) {
            ln->out_of_memory = 1;
            return 0;
        }
        if (ln->p < ln->end && *ln->p == ',') {
            ln->p++;
            continue;
        }
        if (!expect(ln, ']')) return 0;
        return at_value_end(ln);
    }
}

/* Index of a payload key among e E T s a p q f l m U u pu b B A (slot P_E_LOWER + index), -1 if unknown. */
static int data_key(const char *k, Py_ssize_t len) {
    if (len == 1) {
        switch (k[0]) {
        case 'e': return 0;
        case 'E': return 1;
        case 'T': return 2;
        case 's': return 3;
        case 'a': return 4;
        case 'p': return 5;
        case 'q': return 6;
        case 'f': return 7;
        case 'l': return 8;
        case 'm': return 9;
        case 'U': return 10;
        case 'u': return 11;
        case 'b': return 13;
        case 'B': return 14;
        case 'A': return 15;
        default: return -1;
        }
    }
    return len == 2 && k[0] == 'p' && k[1] == 'u' ? 12 : -1;
}

/* Index of a record key among t c n k s symbol (slot K_T + index), -1 if unknown. */
static int top_key(const char *k, Py_ssize_t len) {
    if (len == 1) {
        switch (k[0]) {
        case 't': return 0;
        case 'c': return 1;
        case 'n': return 2;
        case 'k': return 3;
        case 's': return 4;
        default: return -1;
        }
    }
    return len == 6 && memcmp(k, "symbol", 6) == 0 ? 5 : -1;
}

static int read_known(Line *ln, int slot) {
    if (ln->slot_at[slot]) return 0; /* a duplicate key: which one SQL reads is not ours to guess */
    char c = ln->p < ln->end ? *ln->p : 0;
    ln->slot_token[slot] = c == '"' ? 's' : (c == 't' || c == 'f') ? 'b' : 'i';
    return read_scalar(ln, &ln->slot_at[slot], &ln->slot_len[slot]);
}

/* Calls on_key for each key of an object; on_key reads the value. Notes the combined-stream mark
 * ,"f":{"stream": on the way: in a line without escapes it can only be a member "f" after another member whose
 * value is an object starting with "stream" (a quote cannot occur inside a string). */
static int read_object(Line *ln, int (*on_key)(Line *, const char *, Py_ssize_t)) {
    static const char STREAM_OBJECT[] = ":{\"stream\":";
    const size_t stream_object = sizeof STREAM_OBJECT - 1;
    if (!expect(ln, '{')) return 0;
    if (ln->p < ln->end && *ln->p == '}') {
        ln->p++;
        return 1;
    }
    for (int member = 0;; member++) {
        const char *key;
        Py_ssize_t len;
        if (!read_string(ln, &key, &len)) return 0;
        if (member > 0 && len == 1 && key[0] == 'f' && (size_t)(ln->end - ln->p) >= stream_object &&
            memcmp(ln->p, STREAM_OBJECT, stream_object) == 0)
            ln->combined = 1;
        if (!expect(ln, ':') || !on_key(ln, key, len)) return 0;
        if (ln->p < ln->end && *ln->p == ',') {
            ln->p++;
            continue;
        }
        return expect(ln, '}');
    }
}

static int on_data_key(Line *ln, const char *key, Py_ssize_t len) {
    int i = data_key(key, len);
    if (i < 0) return skip_unknown(ln);
    int slot = P_E_LOWER + i;
    if (slot == P_B_LOWER || slot == P_A_LOWER) {
        int side = slot == P_B_LOWER ? 0 : 1;
        if (ln->want_levels) return read_levels(ln, side);
    }
    return read_known(ln, slot);
}

static int on_frame_key(Line *ln, const char *key, Py_ssize_t len) {
    if (len == 4 && memcmp(key, "data", 4) == 0) {
        if (ln->data_seen++) return 0;
        return read_object(ln, on_data_key);
    }
    return skip_unknown(ln);
}

static int on_top_key(Line *ln, const char *key, Py_ssize_t len) {
    if (len == 1 && key[0] == 'f') {
        if (ln->frame_seen++) return 0;
        return read_object(ln, on_frame_key);
    }
    int i = top_key(key, len);
    if (i < 0) return skip_unknown(ln);
    return read_known(ln, K_T + i);
}

/* An integer literal's value, if it fits int64 (what DuckDB's TRY_CAST to BIGINT gives). */
static int int64_of(const char *at, Py_ssize_t len, int64_t *out) {
    int negative = len > 0 && at[0] == '-';
    uint64_t value = 0;
    for (Py_ssize_t i = negative; i < len; i++) {
        uint64_t digit = (uint64_t)(at[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return 0;
        value = value * 10 + digit;
    }
    if (negative) {
        if (value > (uint64_t)INT64_MAX + 1) return 0;
        *out = value == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)value;
    } else {
        if (value > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)value;
    }
    return 1;
}

/* A string's plain decimal (parse_decimal), exact in DECIMAL(18, 8). */
static int scaled_of(const char *at, Py_ssize_t len, int64_t *out) {
    const char *stop;
    return parse_decimal(at, at + len, out, &stop) && stop == at + len;
}

static int scan_line(Line *ln) {
    if (!read_object(ln, on_top_key) || ln->p != ln->end) return 0;
    return 1;
}

/* A block of memory the scan filled, handed to Python without a copy (buffer protocol, read-only). */
typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t len;
} Block;

static void block_dealloc(Block *self) {
    free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int block_getbuffer(Block *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data ? self->data : (char *)"", self->len, 1, flags);
}

static PyBufferProcs BLOCK_BUFFER = {(getbufferproc)block_getbuffer, NULL};

static PyTypeObject BLOCK_TYPE = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_framescan.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &BLOCK_BUFFER,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory filled by scan (read-only buffer).",
};

/* A Block owning *data (which is then NULL here); NULL on error. */
static PyObject *block_of(char **data, Py_ssize_t len) {
    Block *block = PyObject_New(Block, &BLOCK_TYPE);
    if (!block) return NULL;
    block->data = *data;
    block->len = len;
    *data = NULL;
    return (PyObject *)block;
}

typedef struct {
    Buf values;
    int32_t *offsets;
    unsigned char *valid;
    int mode; /* 0 text, 1 int64, 2 decimal scaled by 1e8 (int64) */
} SlotOut;

/* The text, int64 or scaled decimal value of slot k of an accepted line; 0 if the line cannot be typed so. */
static int put_slot(SlotOut *out, const Line *ln, int k, Py_ssize_t row) {
    if (!ln->slot_at[k]) {
        if (out->mode == 0) out->offsets[row + 1] = (int32_t)out->values.len;
        else {
            static const int64_t zero = 0;
            if (!buf_put(&out->values, &zero, 8)) return -1;
        }
        return 1;
    }
    out->valid[row >> 3] |= (unsigned char)(1u << (row & 7));
    if (out->mode == 0) {
        if (!buf_put(&out->values, ln->slot_at[k], ln->slot_len[k]) || out->values.len > INT32_MAX) return -1;
        out->offsets[row + 1] = (int32_t)out->values.len;
        return 1;
    }
    int64_t value = 0;
    if (out->mode == 1) {
        if (ln->slot_token[k] != 'i' || !int64_of(ln->slot_at[k], ln->slot_len[k], &value)) return 0;
    } else if (ln->slot_token[k] != 's' || !scaled_of(ln->slot_at[k], ln->slot_len[k], &value)) {
        return 0;
    }
    return buf_put(&out->values, &value, 8) ? 1 : -1;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, offsets_buf, rows_buf;
    int want_levels;
    unsigned long long int_mask, dec_mask;
    if (!PyArg_ParseTuple(args, "y*y*y*pKK", &data, &offsets_buf, &rows_buf, &want_levels, &int_mask, &dec_mask))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rows_buf.len / 8, n_offsets = offsets_buf.len / 8;
    SlotOut slots[NKEYS];
    Buf prices[2] = {{0}}, qtys[2] = {{0}};
    int32_t *level_offsets[2] = {NULL, NULL};
    unsigned char *accepted = NULL, *combined = NULL;
    int failed = 0;
    memset(slots, 0, sizeof slots);
    accepted = calloc((size_t)n + 1, 1);
    combined = calloc((size_t)n + 1, 1);
    for (int k = 0; k < NKEYS; k++) {
        slots[k].mode = (int_mask >> k) & 1 ? 1 : (dec_mask >> k) & 1 ? 2 : 0;
        slots[k].offsets = calloc((size_t)n + 1, sizeof(int32_t));
        slots[k].valid = calloc((size_t)n / 8 + 1, 1);
        if (!slots[k].offsets || !slots[k].valid) failed = 1;
    }
    for (int s = 0; s < 2; s++) {
        level_offsets[s] = calloc((size_t)n + 1, sizeof(int32_t));
        if (!level_offsets[s]) failed = 1;
    }
    if (!accepted || !combined || failed) {
        PyErr_NoMemory();
        goto done;
    }
    const int64_t *offsets = offsets_buf.buf, *rows = rows_buf.buf;
    const char *base = data.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] + 1 >= n_offsets || offsets[rows[i]] < 0 ||
            offsets[rows[i] + 1] < offsets[rows[i]] || offsets[rows[i] + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "a line lies outside the data");
            goto done;
        }
    Py_ssize_t line_bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++) line_bytes += (Py_ssize_t)(offsets[rows[i] + 1] - offsets[rows[i]]);
    /* Room for the usual case up front (doubling from small would copy the buffers over and over). */
    for (int k = 0; k < NKEYS && !failed; k++) failed = !buf_reserve(&slots[k].values, n * 16);
    if (want_levels)
        for (int s = 0; s < 2 && !failed; s++)
            failed = !buf_reserve(&prices[s], line_bytes / 20 * 16) || !buf_reserve(&qtys[s], line_bytes / 20 * 16);
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    int out_of_memory = 0;
    Py_ssize_t taken = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !out_of_memory; i++) {
        if (i + PREFETCH_AHEAD < n) { /* the lines are far apart in memory: load the next ones while this is read */
            const char *next = base + offsets[rows[i + PREFETCH_AHEAD]];
            for (int line = 0; line < PREFETCH_CACHE_LINES; line++) __builtin_prefetch(next + 64 * line);
        }
        int64_t from = offsets[rows[i]], to = offsets[rows[i] + 1];
        if (to > from && base[to - 1] == '\n') to--;
        Line ln;
        memset(&ln, 0, offsetof(Line, slot_len)); /* the rest is set before it is read */
        ln.p = base + from;
        ln.end = base + to;
        ln.want_levels = want_levels;
        ln.frame_seen = ln.data_seen = ln.combined = ln.out_of_memory = 0;
        ln.levels_seen[0] = ln.levels_seen[1] = 0;
        Py_ssize_t kept_levels[2], kept_slots[NKEYS];
        for (int s = 0; s < 2; s++) {
            ln.prices[s] = &prices[s];
            ln.qtys[s] = &qtys[s];
            kept_levels[s] = prices[s].len;
        }
        for (int k = 0; k < NKEYS; k++) kept_slots[k] = slots[k].values.len;
        int ok = scan_line(&ln);
        if (ok && want_levels) ok = ln.levels_seen[0] && ln.levels_seen[1];
        if (ln.out_of_memory) out_of_memory = 1;
        for (int k = 0; k < NKEYS && ok; k++) {
            int put = put_slot(&slots[k], &ln, k, taken);
            if (put < 0) out_of_memory = 1;
            if (put <= 0) ok = 0;
        }
        accepted[i] = (unsigned char)ok;
        if (!ok) {
            for (int s = 0; s < 2; s++) prices[s].len = qtys[s].len = kept_levels[s];
            for (int k = 0; k < NKEYS; k++) {
                slots[k].values.len = kept_slots[k];
                slots[k].valid[taken >> 3] &= (unsigned char)~(1u << (taken & 7));
            }
            continue;
        }
        for (int s = 0; s < 2; s++) {
            if (prices[s].len / 16 > INT32_MAX) out_of_memory = 1;
            level_offsets[s][taken + 1] = (int32_t)(prices[s].len / 16);
        }
        combined[taken] = (unsigned char)ln.combined;
        taken++;
    }
    Py_END_ALLOW_THREADS
    if (out_of_memory) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *slot_list = PyList_New(NKEYS);
    if (!slot_list) goto done;
    for (int k = 0; k < NKEYS; k++) {
        PyObject *item = Py_BuildValue(
            "(NNN)",
            slots[k].mode == 0 ? block_of((char **)&slots[k].offsets, (taken + 1) * 4) : Py_NewRef(Py_None),
            block_of(&slots[k].values.data, slots[k].values.len),
            block_of((char **)&slots[k].valid, (taken + 7) / 8));
        if (!item) {
            Py_DECREF(slot_list);
            goto done;
        }
        PyList_SET_ITEM(slot_list, k, item);
    }
    PyObject *level_list = PyList_New(0);
    if (!level_list) {
        Py_DECREF(slot_list);
        goto done;
    }
    if (want_levels)
        for (int s = 0; s < 2; s++) {
            PyObject *item = Py_BuildValue("(NNN)", block_of((char **)&level_offsets[s], (taken + 1) * 4),
                                           block_of(&prices[s].data, prices[s].len), block_of(&qtys[s].data, qtys[s].len));
            if (!item || PyList_Append(level_list, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(slot_list);
                Py_DECREF(level_list);
                goto done;
            }
            Py_DECREF(item);
        }
    result = Py_BuildValue("(NNNN)", block_of((char **)&accepted, n), block_of((char **)&combined, taken), slot_list,
                           level_list);
done:
    for (int k = 0; k < NKEYS; k++) {
        free(slots[k].values.data);
        free(slots[k].offsets);
        free(slots[k].valid);
    }
    for (int s = 0; s < 2; s++) {
        free(prices[s].data);
        free(qtys[s].data);
        free(level_offsets[s]);
    }
    free(accepted);
    free(combined);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets_buf);
    PyBuffer_Release(&rows_buf);
    return result;
}

/* The fast path's guess of each line (docs in fast.py): 1 if it contains @aggTrade", else 2 if @bookTicker", else
 * 3 if @depth, else 0; and whether it may be a connect record (it contains "connect" or a backslash). Every mark
 * starts with '@', so one memchr walk over a line finds them all. */
static PyObject *classify(PyObject *self, PyObject *args) {
    (void)self;
    static const char *const MARKS[] = {"@aggTrade\"", "@bookTicker\"", "@depth"};
    Py_buffer data, offsets_buf;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &offsets_buf)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offsets_buf.len / 8 - 1;
    if (n < 0) n = 0;
    char *kinds = malloc((size_t)n + 1), *connect = malloc((size_t)n + 1);
    const int64_t *offsets = offsets_buf.buf;
    const char *base = data.buf;
    if (!kinds || !connect) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (offsets[i] < 0 || offsets[i + 1] < offsets[i] || offsets[i + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "a line lies outside the data");
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *line = base + offsets[i], *end = base + offsets[i + 1];
        int found = 0;
        for (const char *at = line; (at = memchr(at, '@', (size_t)(end - at))) != NULL; at++)
            for (int m = 0; m < 3; m++) {
                size_t len = strlen(MARKS[m]);
                if ((size_t)(end - at) >= len && memcmp(at, MARKS[m], len) == 0) found |= 1 << m;
            }
        kinds[i] = (char)(found & 1 ? 1 : found & 2 ? 2 : found & 4 ? 3 : 0);
        size_t len = (size_t)(end - line);
        connect[i] = (char)(memchr(line, '\\', len) != NULL || memmem(line, len, "connect", 7) != NULL);
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(NN)", block_of(&kinds, n), block_of(&connect, n));
done:
    free(kinds);
    free(connect);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets_buf);
    return result;
}

static PyMethodDef METHODS[] = {
    {"scan", scan, METH_VARARGS,
     "scan(data, offsets, rows, levels, int_mask, dec_mask) -> (accepted, combined, slots, levels)"},
    {"classify", classify, METH_VARARGS, "classify(data, offsets) -> (kinds int8[n], may_connect bool[n])"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_framescan", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__framescan(void) {
    if (PyType_Ready(&BLOCK_TYPE) < 0) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
    if (!module) return NULL;
    PyObject *keys = PyTuple_New(NKEYS);
    if (!keys) {
        Py_DECREF(module);
        return NULL;
    }
    for (int k = 0; k < NKEYS; k++) PyTuple_SET_ITEM(keys, k, PyUnicode_FromString(KEY_NAMES[k]));
    if (PyModule_AddObject(module, "KEYS", keys) < 0) {
        Py_DECREF(keys);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
