/*
 * _sstok: the field extractor of read_ss's fast path, in C.
 *
 * It takes each line as the per-line reference parser (_ss_line.parse_line) does: the head
 * ([netid] state recv-q send-q local peer), users:(...) right after the peer, then token by token
 * (first occurrence wins; "send <rate>" pairs; keys read_ss ignores). Where the reference parser
 * would keep a token in `unparsed`, or where this file is not sure to cut a line exactly as the
 * reference does (a bracketed address with a scope, skmem fields out of ss's order, a process name
 * with ':', '"' or a control byte, a control byte anywhere but whitespace), it sets the line's
 * `slow` flag and Python hands that line to the reference parser. So it needs no grammar pass
 * first, and it can make a line slower, never different: the tests compare the two on every
 * fixture line and on mutated lines (hypothesis).
 *
 * Memory safety: every read of line i stays inside data[offs[i] : offs[i+1]] (checked against the
 * buffer's length first); every write is inside the arrays Python allocated, whose sizes are checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ABI 2

/* Integer columns, in this order (Python: _sstok_cols.INT_COLUMNS). */
enum {
    I_RECV_Q, I_SEND_Q, I_INODE, I_UID, I_MSS, I_RCVMSS, I_ADVMSS, I_CWND, I_BYTES_SENT,
    I_BYTES_ACKED, I_BYTES_RECEIVED, I_RCV_SPACE, I_RCV_SSTHRESH, I_NOTSENT, I_SND_WND, I_RCV_WND,
    I_SK_R, I_SK_RB, I_SK_T, I_SK_TB, I_SK_F, I_SK_W, I_SK_O, I_SK_BL, I_SK_D,
    N_INT
};
/* String columns as (start, end) byte offsets into data; -1 when absent. */
enum {
    S_NETID, S_STATE, S_LADDR, S_LPORT, S_PADDR, S_PPORT, S_SK, S_CGROUP, S_TIMER, S_RTT, S_USERS,
    N_SPAN
};

/* Token keys (the text before a token's first ':'), looked up in a small hash table: the column
 * keys below, and the keys read_ss knowingly ignores (_ss_line.IGNORED_KEYS, given by configure()). */
enum { K_NONE = -100, K_IGNORED = -7, K_SK = -1, K_CGROUP = -2, K_TIMER = -3, K_RTT = -4, K_SKMEM = -5, K_MEM = -6 };

static const struct {
    const char *key;
    int code; /* >= 0: an int column; < 0: a K_* special */
} COLUMN_KEYS[] = {
    {"ino", I_INODE}, {"uid", I_UID}, {"mss", I_MSS}, {"rcvmss", I_RCVMSS}, {"advmss", I_ADVMSS},
    {"cwnd", I_CWND}, {"bytes_sent", I_BYTES_SENT}, {"bytes_acked", I_BYTES_ACKED},
    {"bytes_received", I_BYTES_RECEIVED}, {"rcv_space", I_RCV_SPACE},
    {"rcv_ssthresh", I_RCV_SSTHRESH}, {"notsent", I_NOTSENT}, {"snd_wnd", I_SND_WND},
    {"rcv_wnd", I_RCV_WND}, {"sk", K_SK}, {"cgroup", K_CGROUP}, {"timer", K_TIMER}, {"rtt", K_RTT},
    {"skmem", K_SKMEM}, {"mem", K_MEM},
};
#define N_COLUMN_KEYS ((int)(sizeof(COLUMN_KEYS) / sizeof(COLUMN_KEYS[0])))

#define KEY_MAX 32
#define TABLE 512 /* power of two, > 2x the keys */
static struct {
    char key[KEY_MAX];
    int len; /* 0: empty slot */
    int code;
} table[TABLE];
static int configured = 0;

static uint32_t hash(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static int table_add(const char *key, size_t n, int code)
{
    if (n == 0 || n >= KEY_MAX)
        return -1;
    uint32_t h = hash((const unsigned char *)key, n) & (TABLE - 1);
    for (int probe = 0; probe < TABLE; probe++, h = (h + 1) & (TABLE - 1)) {
        if (table[h].len == (int)n && memcmp(table[h].key, key, n) == 0)
            return 0; /* a column key wins over the same name in the ignored list */
        if (table[h].len == 0) {
            memcpy(table[h].key, key, n);
            table[h].len = (int)n;
            table[h].code = code;
            return 0;
        }
    }
    return -1;
}

static int lookup(const unsigned char *p, size_t n)
{
    if (n == 0 || n >= KEY_MAX)
        return K_NONE;
    uint32_t h = hash(p, n) & (TABLE - 1);
    for (int probe = 0; probe < TABLE; probe++, h = (h + 1) & (TABLE - 1)) {
        if (table[h].len == 0)
            return K_NONE;
        if (table[h].len == (int)n && memcmp(table[h].key, p, n) == 0)
            return table[h].code;
    }
    return K_NONE;
}

/* Whitespace as ss and the reference parser (_ss_line.WS) see it. */
static inline int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; }
/* Control bytes that are not WS: a line holding one goes to the reference parser. */
static inline int is_odd_ctl(unsigned char c) { return c < 0x20 && !is_ws(c); }
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static inline int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }

/* Value of the digits in [p, e): -1 unless 1 to 18 ASCII digits (_ss_line.UINT_RE). */
static int64_t digits(const unsigned char *p, const unsigned char *e)
{
    if (e <= p || e - p > 18)
        return -1;
    int64_t v = 0;
    for (; p < e; p++) {
        if (!is_digit(*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* [0-9]+(\.[0-9]+)? at p: the end of it, or NULL. */
static const unsigned char *decimal(const unsigned char *p, const unsigned char *e)
{
    const unsigned char *q = p;
    while (q < e && is_digit(*q))
        q++;
    if (q == p)
        return NULL;
    if (q < e && *q == '.') {
        const unsigned char *d = ++q;
        while (q < e && is_digit(*q))
            q++;
        if (q == d)
            return NULL;
    }
    return q;
}

/* _ss_line.RATE_RE: [0-9]+(\.[0-9]+)?[KMGT]?bps(/[0-9]+(\.[0-9]+)?[KMGT]?bps)? , whole token. */
static int is_rate(const unsigned char *p, const unsigned char *e)
{
    for (int part = 0; part < 2; part++) {
        p = decimal(p, e);
        if (!p)
            return 0;
        if (p < e && (*p == 'K' || *p == 'M' || *p == 'G' || *p == 'T'))
            p++;
        if (e - p < 3 || memcmp(p, "bps", 3) != 0)
            return 0;
        p += 3;
        if (p == e)
            return 1;
        if (part == 1 || *p != '/')
            return 0;
        p++;
    }
    return 0;
}

/* _ss_line.BARE_WORD_RE: [a-z][a-z0-9_-]* , whole token. */
static int is_bare(const unsigned char *p, const unsigned char *e)
{
    if (p >= e || !is_lower(*p))
        return 0;
    for (p++; p < e; p++)
        if (!(is_lower(*p) || is_digit(*p) || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* One skmem field: `prefix` then digits up to `,` or `)`. Returns the position of that separator
 * (or NULL if the field is not exactly that). */
static const unsigned char *field(const unsigned char *p, const unsigned char *e, const char *prefix,
                                  int64_t *out)
{
    size_t n = strlen(prefix);
    if ((size_t)(e - p) < n || memcmp(p, prefix, n) != 0)
        return NULL;
    const unsigned char *q = p + n, *d = q;
    while (q < e && is_digit(*q))
        q++;
    if (q >= e || (*q != ',' && *q != ')'))
        return NULL;
    *out = digits(d, q);
    return *out < 0 ? NULL : q;
}

/* skmem value "(r1,rb2,t3,tb4,f5,w6,o7[,bl8][,d9])" in [p, e) (ss's order only: any other order the
 * reference parser takes). */
static int skmem(const unsigned char *p, const unsigned char *e, int64_t v[9])
{
    static const char *fixed[7] = {"r", "rb", "t", "tb", "f", "w", "o"};
    for (int k = 0; k < 9; k++)
        v[k] = -1;
    if (p >= e || *p != '(')
        return -1;
    p++;
    for (int k = 0; k < 7; k++) {
        p = field(p, e, fixed[k], &v[k]);
        if (!p)
            return -1;
        if (*p == ')')
            return (k == 6 && p + 1 == e) ? 0 : -1;
        p++;
    }
    if (e - p >= 2 && p[0] == 'b' && p[1] == 'l') {
        p = field(p, e, "bl", &v[7]);
        if (!p)
            return -1;
        if (*p == ')')
            return p + 1 == e ? 0 : -1;
        p++;
    }
    p = field(p, e, "d", &v[8]);
    return (p && *p == ')' && p + 1 == e) ? 0 : -1;
}

/* mem value "(r1,w2,f3,t4)" in [p, e) (_ss_line.MEM_RE, at most 18 digits each). */
static int mem(const unsigned char *p, const unsigned char *e, int64_t v[4])
{
    static const char *names[4] = {"r", "w", "f", "t"};
    if (p >= e || *p != '(')
        return -1;
    p++;
    for (int k = 0; k < 4; k++) {
        p = field(p, e, names[k], &v[k]);
        if (!p || (k < 3 && *p != ',') || (k == 3 && (*p != ')' || p + 1 != e)))
            return -1;
        p++;
    }
    return 0;
}

/* An address token [s, e) -> address and port spans (_ss_line.split_address); -1 when this
 * extractor leaves it to the reference parser (a bracket anywhere odd, a scope after "]"). */
static int address(const unsigned char *base, const unsigned char *s, const unsigned char *e,
                   int64_t *as, int64_t *ae, int64_t *ps, int64_t *pe)
{
    const unsigned char *colon = NULL;
    for (const unsigned char *q = e; q > s; q--)
        if (q[-1] == ':') {
            colon = q - 1;
            break;
        }
    if (!colon || colon + 1 >= e)
        return -1;
    for (const unsigned char *q = colon + 1; q < e; q++)
        if (*q == ']')
            return -1;
    if (*s == '[') { /* [addr]:port */
        if (colon - 1 <= s || colon[-1] != ']')
            return -1;
        for (const unsigned char *q = s + 1; q < colon - 1; q++)
            if (*q == ']' || *q == '[')
                return -1;
        *as = s + 1 - base;
        *ae = colon - 1 - base;
    } else { /* addr:port, addr not empty */
        if (colon == s)
            return -1;
        for (const unsigned char *q = s; q < colon; q++)
            if (*q == '[' || *q == ']')
                return -1;
        *as = s - base;
        *ae = colon - base;
    }
    *ps = colon + 1 - base;
    *pe = e - base;
    return 0;
}

/* One ("comm",pid=N,fd=N) at p: the position after its ')', or NULL. Names without '"', ':' or
 * control bytes only (then _ss_line.USERS_RE and OWNER_RE cut them the same way); pid and fd are C
 * ints. */
static const unsigned char *owner(const unsigned char *p, const unsigned char *e,
                                  const unsigned char **comm, const unsigned char **comm_end,
                                  int64_t *pid, int64_t *fd)
{
    if (e - p < 2 || p[0] != '(' || p[1] != '"')
        return NULL;
    p += 2;
    *comm = p;
    while (p < e && *p != '"') {
        if (*p == ':' || *p < 0x20 || *p == 0x7f)
            return NULL;
        p++;
    }
    *comm_end = p;
    if (e - p < 6 || memcmp(p, "\",pid=", 6) != 0)
        return NULL;
    p += 6;
    const unsigned char *d = p;
    while (p < e && is_digit(*p))
        p++;
    *pid = digits(d, p);
    if (*pid < 0 || *pid > INT32_MAX || e - p < 4 || memcmp(p, ",fd=", 4) != 0)
        return NULL;
    p += 4;
    d = p;
    while (p < e && is_digit(*p))
        p++;
    *fd = digits(d, p);
    if (*fd < 0 || *fd > INT32_MAX || p >= e || *p != ')')
        return NULL;
    return p + 1;
}

/* The body of users:(...) at p (its first '('): owners separated by ',' then ')'. Returns the
 * position just after the block's closing ')', or NULL; counts the owners. */
static const unsigned char *users(const unsigned char *p, const unsigned char *e, int64_t *count)
{
    const unsigned char *name, *name_end;
    int64_t pid, fd, n = 0;
    for (;;) {
        p = owner(p, e, &name, &name_end, &pid, &fd);
        if (!p)
            return NULL;
        n++;
        if (p < e && *p == ',')
            p++;
        else if (p < e && *p == ')') {
            *count = n;
            return p + 1;
        } else
            return NULL;
    }
}

/* The next token at or after p (a run of non-WS bytes): its start, and its end in *te. */
static inline const unsigned char *token(const unsigned char *p, const unsigned char *e,
                                         const unsigned char **te)
{
    while (p < e && is_ws(*p))
        p++;
    const unsigned char *s = p;
    while (p < e && !is_ws(*p))
        p++;
    *te = p;
    return s;
}

#define INT(c) ints[(int64_t)(c) * n + i]
#define SPAN(c, k) spans[((int64_t)(c) * 2 + (k)) * n + i]
#define SETDEFAULT_SPAN(c, a, b)                                                                   \
    do {                                                                                           \
        if (SPAN(c, 0) < 0) {                                                                      \
            SPAN(c, 0) = (a) - base;                                                               \
            SPAN(c, 1) = (b) - base;                                                               \
        }                                                                                          \
    } while (0)

/* One token after the head and the owners, as _ss_line.parse_line's loop takes it (a token it
 * would keep in `unparsed` makes the line slow: -1). *skip is set for "send <rate>" pairs. */
static int rest_token(const unsigned char *base, const unsigned char *ts, const unsigned char *te,
                      int64_t n, int64_t i, int64_t *ints, int64_t *spans)
{
    const unsigned char *colon = memchr(ts, ':', te - ts);
    if (!colon) {
        if (te - ts == 3 && (memcmp(ts, "<->", 3) == 0 || memcmp(ts, "-->", 3) == 0 ||
                             memcmp(ts, "<--", 3) == 0 || memcmp(ts, "---", 3) == 0))
            return 0;
        return is_bare(ts, te) ? 0 : -1;
    }
    int code = lookup(ts, colon - ts);
    const unsigned char *vs = colon + 1;
    if (code >= 0) {
        int64_t v = digits(vs, te);
        if (v < 0)
            return -1;
        if (INT(code) < 0)
            INT(code) = v;
        return 0;
    }
    switch (code) {
    case K_IGNORED:
        return 0;
    case K_SK:
    case K_CGROUP:
        if (vs >= te) /* "sk:" with nothing: the reference parser keeps "" */
            return -1;
        SETDEFAULT_SPAN(code == K_SK ? S_SK : S_CGROUP, vs, te);
        return 0;
    case K_TIMER:
        if (te - vs < 2 || *vs != '(' || te[-1] != ')')
            return -1;
        SETDEFAULT_SPAN(S_TIMER, vs + 1, te - 1);
        return 0;
    case K_RTT: { /* [0-9]+(\.[0-9]+)?/[0-9]+(\.[0-9]+)? */
        const unsigned char *a = decimal(vs, te);
        if (!a || a >= te || *a != '/')
            return -1;
        const unsigned char *b = decimal(a + 1, te);
        if (!b || b != te)
            return -1;
        SETDEFAULT_SPAN(S_RTT, vs, a);
        return 0;
    }
    case K_SKMEM: {
        int64_t v[9];
        if (skmem(vs, te, v) < 0)
            return -1;
        for (int f = 0; f < 9; f++)
            if (v[f] >= 0 && INT(I_SK_R + f) < 0)
                INT(I_SK_R + f) = v[f];
        return 0;
    }
    case K_MEM: {
        int64_t v[4];
        static const int cols[4] = {I_SK_R, I_SK_W, I_SK_F, I_SK_T};
        if (mem(vs, te, v) < 0)
            return -1;
        for (int f = 0; f < 4; f++)
            if (INT(cols[f]) < 0)
                INT(cols[f]) = v[f];
        return 0;
    }
    default:
        return -1; /* an unknown key: `unparsed` */
    }
}

/* One line [s, e) as _ss_line.parse_line would take it. Returns 0, or -1 for "slow". */
static int line(const unsigned char *base, const unsigned char *s, const unsigned char *e,
                int64_t n, int64_t i, int64_t *ints, int64_t *spans, int64_t *owner_count)
{
    for (const unsigned char *q = s; q < e; q++)
        if (is_odd_ctl(*q))
            return -1;
    const unsigned char *te, *ts = token(s, e, &te);
    if (ts < e && is_lower(*ts)) { /* [a-z][a-z0-9_]* netid */
        for (const unsigned char *q = ts + 1; q < te; q++)
            if (!(is_lower(*q) || is_digit(*q) || *q == '_'))
                return -1;
        SPAN(S_NETID, 0) = ts - base;
        SPAN(S_NETID, 1) = te - base;
        ts = token(te, e, &te);
    }
    if (ts >= e || !is_upper(*ts)) /* [A-Z][A-Z0-9_-]* state */
        return -1;
    for (const unsigned char *q = ts + 1; q < te; q++)
        if (!(is_upper(*q) || is_digit(*q) || *q == '_' || *q == '-'))
            return -1;
    SPAN(S_STATE, 0) = ts - base;
    SPAN(S_STATE, 1) = te - base;
    ts = token(te, e, &te);
    if ((INT(I_RECV_Q) = digits(ts, te)) < 0)
        return -1;
    ts = token(te, e, &te);
    if ((INT(I_SEND_Q) = digits(ts, te)) < 0)
        return -1;
    ts = token(te, e, &te);
    if (ts >= e || address(base, ts, te, &SPAN(S_LADDR, 0), &SPAN(S_LADDR, 1), &SPAN(S_LPORT, 0),
                           &SPAN(S_LPORT, 1)) < 0)
        return -1;
    ts = token(te, e, &te);
    if (ts >= e || address(base, ts, te, &SPAN(S_PADDR, 0), &SPAN(S_PADDR, 1), &SPAN(S_PPORT, 0),
                           &SPAN(S_PPORT, 1)) < 0)
        return -1;
    const unsigned char *p = te;
    /* users:(...) right after the peer (_ss_line.USERS_RE) */
    const unsigned char *q = p;
    while (q < e && is_ws(*q))
        q++;
    if (q > p && e - q >= 7 && memcmp(q, "users:(", 7) == 0) {
        int64_t count = 0;
        const unsigned char *end = users(q + 7, e, &count);
        if (!end || (end < e && !is_ws(*end)))
            return -1;
        SPAN(S_USERS, 0) = q + 7 - base;
        SPAN(S_USERS, 1) = end - 1 - base;
        owner_count[i] = count;
        p = end;
    }
    const unsigned char *pending = NULL, *pend = NULL; /* "send"-like word waiting for its rate */
    for (;;) {
        ts = token(p, e, &te);
        if (ts >= e)
            break;
        p = te;
        if (pending) {
            const unsigned char *w = pending, *we = pend;
            pending = NULL;
            if (is_rate(ts, te))
                continue; /* "send 1.2Mbps": both tokens taken */
            if (rest_token(base, w, we, n, i, ints, spans) < 0)
                return -1;
        }
        if ((te - ts == 4 && memcmp(ts, "send", 4) == 0) ||
            (te - ts == 11 && memcmp(ts, "pacing_rate", 11) == 0) ||
            (te - ts == 13 && memcmp(ts, "delivery_rate", 13) == 0)) {
            pending = ts;
            pend = te;
            continue;
        }
        if (rest_token(base, ts, te, n, i, ints, spans) < 0)
            return -1;
    }
    if (pending && rest_token(base, pending, pend, n, i, ints, spans) < 0)
        return -1;
    return 0;
}
#undef INT
#undef SPAN
#undef SETDEFAULT_SPAN

static int need(Py_buffer *b, Py_ssize_t bytes, const char *what)
{
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "_sstok: %s holds %zd bytes, needs %zd", what, b->len, bytes);
        return -1;
    }
    return 0;
}

/* columns(data, offs, slow, ints, spans, owner_count[, start, end])
 *   data: the text (bytes-like); offs: int64[n+1] line boundaries into data; slow: uint8[n]
 *   (in: 1 for lines to skip; out: 1 for lines the per-line parser must take);
 *   ints: int64[N_INT*n] (out, -1 = absent); spans: int64[N_SPAN*2*n] (out, -1 = absent);
 *   owner_count: int64[n] (out). Only lines start..end-1 are read and only their entries written,
 *   so threads can fill disjoint ranges of the same arrays. Runs without the GIL. */
static PyObject *columns(PyObject *self, PyObject *args)
{
    Py_buffer data, offs, slow, ints, spans, oc;
    Py_ssize_t start = 0, end = -1;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*w*|nn", &data, &offs, &slow, &ints, &spans, &oc, &start,
                          &end))
        return NULL;
    PyObject *ret = NULL;
    int64_t n = slow.len;
    if (end < 0)
        end = n;
    if (start < 0 || start > end || end > n) {
        PyErr_SetString(PyExc_ValueError, "_sstok: line range out of bounds");
        goto done;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_sstok: configure() first");
        goto done;
    }
    if (need(&offs, (n + 1) * 8, "offs") < 0 || need(&ints, N_INT * n * 8, "ints") < 0 ||
        need(&spans, N_SPAN * 2 * n * 8, "spans") < 0 || need(&oc, n * 8, "owner_count") < 0)
        goto done;
    const int64_t *o = offs.buf;
    for (int64_t i = start; i <= end; i++)
        if (o[i] < 0 || o[i] > data.len || (i > start && o[i] < o[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "_sstok: line offsets out of range");
            goto done;
        }
    const unsigned char *base = data.buf;
    unsigned char *sl = slow.buf;
    int64_t *iv = ints.buf, *sv = spans.buf, *ov = oc.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int c = 0; c < N_INT; c++) /* -1: absent */
        memset(iv + c * n + start, 0xff, (size_t)((end - start) * 8));
    for (int c = 0; c < 2 * N_SPAN; c++)
        memset(sv + c * n + start, 0xff, (size_t)((end - start) * 8));
    memset(ov + start, 0, (size_t)((end - start) * 8));
    for (int64_t i = start; i < end; i++) {
        if (sl[i])
            continue;
        if (line(base, base + o[i], base + o[i + 1], n, i, iv, sv, ov) < 0) {
            sl[i] = 1;
            for (int c = 0; c < N_INT; c++)
                iv[c * n + i] = -1;
            for (int c = 0; c < 2 * N_SPAN; c++)
                sv[c * n + i] = -1;
            ov[i] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&slow);
    PyBuffer_Release(&ints);
    PyBuffer_Release(&spans);
    PyBuffer_Release(&oc);
    return ret;
}

/* owners(data, users_start, users_end, comm_start, comm_end, pid, fd)
 *   users_*: int64[n] spans of users:(...) bodies (-1: none), as columns() wrote them; the other
 *   four are int64[m] outputs, m = the sum of columns()' owner_count. Lines were checked by
 *   columns(); a body that does not parse again is an error. */
static PyObject *owners(PyObject *self, PyObject *args)
{
    Py_buffer data, us, ue, cs, ce, pid, fd;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*", &data, &us, &ue, &cs, &ce, &pid, &fd))
        return NULL;
    PyObject *ret = NULL;
    int64_t n = us.len / 8, m = cs.len / 8, k = 0;
    int bad = 0;
    if (need(&ue, n * 8, "users_end") < 0 || need(&ce, m * 8, "comm_end") < 0 ||
        need(&pid, m * 8, "pid") < 0 || need(&fd, m * 8, "fd") < 0)
        goto done;
    const unsigned char *base = data.buf;
    const int64_t *S = us.buf, *E = ue.buf;
    int64_t *C0 = cs.buf, *C1 = ce.buf, *P = pid.buf, *F = fd.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < n && !bad; i++) {
        if (S[i] < 0)
            continue;
        if (S[i] > E[i] || E[i] >= data.len) {
            bad = 1;
            break;
        }
        const unsigned char *p = base + S[i], *e = base + E[i];
        while (p < e) { /* ("comm",pid=N,fd=N) then "," or the end */
            const unsigned char *name, *name_end;
            int64_t pv, fv;
            if (k >= m || !(p = owner(p, e, &name, &name_end, &pv, &fv)) || (p < e && *p != ',')) {
                bad = 1;
                break;
            }
            C0[k] = name - base;
            C1[k] = name_end - base;
            P[k] = pv;
            F[k] = fv;
            k++;
            if (p < e)
                p++;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad || k != m) {
        PyErr_SetString(PyExc_ValueError, "_sstok: users:(...) bodies changed between the two passes");
        goto done;
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&us);
    PyBuffer_Release(&ue);
    PyBuffer_Release(&cs);
    PyBuffer_Release(&ce);
    PyBuffer_Release(&pid);
    PyBuffer_Release(&fd);
    return ret;
}

/* configure(ignored_keys): the keys read_ss knowingly ignores (_ss_line.IGNORED_KEYS), once. */
static PyObject *configure(PyObject *self, PyObject *arg)
{
    PyObject *it = PyObject_GetIter(arg), *item;
    if (!it)
        return NULL;
    while ((item = PyIter_Next(it))) {
        Py_ssize_t len;
        const char *key = PyUnicode_AsUTF8AndSize(item, &len);
        if (!key || table_add(key, (size_t)len, K_IGNORED) < 0) {
            if (key)
                PyErr_Format(PyExc_ValueError, "_sstok: cannot take key %R", item);
            Py_DECREF(item);
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_O, "Give the keys read_ss ignores (once, before columns())."},
    {"columns", columns, METH_VARARGS, "Fill the column arrays of ss lines, or flag them slow."},
    {"owners", owners, METH_VARARGS, "Cut users:(...) bodies into (comm span, pid, fd)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sstok",
                                     "C field extractor for read_ss's fast path.", -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sstok(void)
{
    for (int k = 0; k < N_COLUMN_KEYS; k++)
        if (table_add(COLUMN_KEYS[k].key, strlen(COLUMN_KEYS[k].key), COLUMN_KEYS[k].code) < 0) {
            PyErr_SetString(PyExc_RuntimeError, "_sstok: key table");
            return NULL;
        }
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "ABI", ABI) < 0 || PyModule_AddIntConstant(m, "N_INT", N_INT) < 0 ||
              PyModule_AddIntConstant(m, "N_SPAN", N_SPAN) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
