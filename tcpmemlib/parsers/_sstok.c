/*
 * _sstok: read_ss's C engine (the reference engine is _ss_line.py; _ss_fast.py is the glue).
 *
 * split()   cuts the text into socket records exactly as _ss_line.records() does: a physical line
 *           plus the TAB-led continuation lines ss prints without -O, plus the pieces of a process
 *           name that held a raw newline (a line that cannot start a record, after a record whose
 *           users:((" block is still open); blank and header records are left out.
 * columns() takes each record as _ss_line.parse_line() does: the head ([netid] state recv-q send-q
 *           local peer), users:(...) right after the peer, then token by token (first occurrence
 *           wins; "send <rate>" pairs; keys read_ss ignores). Where the reference parser would keep
 *           a token in `unparsed` or reject the line, or where this file is not sure to cut it
 *           exactly the same way (a bracketed address with a scope, skmem fields out of ss's order,
 *           a process name with '"' or a control byte, a number of more than 19 digits or above
 *           2**63-1, an rtt with more than 15 digits), it sets the record's `slow` flag and Python
 *           hands that record to the reference parser. So it can make a record slower, never
 *           different: the tests compare the engines on every fixture and on mutated lines.
 * owners()  builds the users:(...) tuples, one per distinct block text.
 * utf8()    exposes a str's UTF-8 bytes as a read-only buffer without copying (ASCII text).
 *
 * Memory safety: every read of record i stays inside data[starts[i] : ends[i]] (checked against
 * the buffer's length first); every write is inside the arrays Python allocated, whose sizes are
 * checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ABI 3

/* Integer columns, in this order (Python: _ss_fast.INT_COLUMNS). */
enum {
    I_RECV_Q, I_SEND_Q, I_INODE, I_UID, I_MSS, I_RCVMSS, I_ADVMSS, I_CWND, I_BYTES_SENT,
    I_BYTES_ACKED, I_BYTES_RECEIVED, I_RCV_SPACE, I_RCV_SSTHRESH, I_NOTSENT, I_SND_WND, I_RCV_WND,
    I_SK_R, I_SK_RB, I_SK_T, I_SK_TB, I_SK_F, I_SK_W, I_SK_O, I_SK_BL, I_SK_D,
    N_INT
};
/* String columns as (start, end) byte offsets into data; -1 when absent (_ss_fast.SPANS). */
enum {
    S_NETID, S_STATE, S_LADDR, S_LPORT, S_PADDR, S_PPORT, S_SK, S_CGROUP, S_TIMER, S_USERS,
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
    uint64_t word; /* the key's first 8 bytes (zero-padded) */
    int len;       /* 0: empty slot */
    int code;
} table[TABLE];
static int configured = 0;

/* The first min(n, 8) bytes at p as a little-endian word, zero-padded; `room` bytes are readable. */
static inline uint64_t key_word(const unsigned char *p, size_t n, size_t room)
{
    uint64_t w = 0;
    if (room >= 8) {
        memcpy(&w, p, 8);
        if (n < 8)
            w &= (1ull << (8 * n)) - 1;
    } else {
        for (size_t i = 0; i < n && i < 8; i++)
            w |= (uint64_t)p[i] << (8 * i);
    }
    return w;
}

static inline uint32_t hash(uint64_t word, size_t n)
{
    return (uint32_t)(((word ^ n) * 0x9E3779B97F4A7C15ull) >> 40) & (TABLE - 1);
}

static int table_add(const char *key, size_t n, int code)
{
    if (n == 0 || n >= KEY_MAX)
        return -1;
    uint64_t w = key_word((const unsigned char *)key, n, 0);
    uint32_t h = hash(w, n);
    for (int probe = 0; probe < TABLE; probe++, h = (h + 1) & (TABLE - 1)) {
        if (table[h].len == (int)n && memcmp(table[h].key, key, n) == 0)
            return 0; /* a column key wins over the same name in the ignored list */
        if (table[h].len == 0) {
            memcpy(table[h].key, key, n);
            table[h].word = w;
            table[h].len = (int)n;
            table[h].code = code;
            return 0;
        }
    }
    return -1;
}

/* The code of the key [p, p + n); `room` bytes are readable at p. */
static inline int lookup(const unsigned char *p, size_t n, size_t room)
{
    if (n == 0 || n >= KEY_MAX)
        return K_NONE;
    uint64_t w = key_word(p, n, room);
    uint32_t h = hash(w, n);
    for (int probe = 0; probe < TABLE; probe++, h = (h + 1) & (TABLE - 1)) {
        if (table[h].len == 0)
            return K_NONE;
        if (table[h].word == w && table[h].len == (int)n &&
            (n <= 8 || memcmp(table[h].key + 8, p + 8, n - 8) == 0))
            return table[h].code;
    }
    return K_NONE;
}

/* Byte classes: whitespace as ss and the reference parser (_ss_line.WS) see it; control bytes
 * that are not whitespace (a record holding one goes to the reference parser); the rest. */
enum { C_TEXT = 0, C_WS = 1, C_CTL = 2 };
static unsigned char CLASS[256];

static void init_classes(void)
{
    for (int c = 0; c < 0x20; c++)
        CLASS[c] = C_CTL;
    CLASS[' '] = CLASS['\t'] = CLASS['\n'] = CLASS['\f'] = CLASS['\r'] = C_WS;
}

static inline int is_ws(unsigned char c) { return CLASS[c] == C_WS; }
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static inline int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }

/* Value of the digits in [p, e): -1 unless 1 to 19 ASCII digits worth at most 2**63-1. */
static int64_t digits(const unsigned char *p, const unsigned char *e)
{
    if (e <= p || e - p > 19)
        return -1;
    uint64_t v = 0;
    for (; p < e; p++) {
        if (!is_digit(*p))
            return -1;
        v = v * 10 + (uint64_t)(*p - '0'); /* < 10**19 < 2**64: no wrap */
    }
    return v > (uint64_t)INT64_MAX ? -1 : (int64_t)v;
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

/* The decimal [p, e) (as decimal() accepted it) as the double Python's float() gives: the digits
 * as an integer below 2**53 divided by a power of ten up to 10**15, both exact, so the one
 * division rounds correctly. NaN (the record goes to the reference parser) for more digits. */
static double decimal_value(const unsigned char *p, const unsigned char *e)
{
    static const double POW10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    int64_t m = 0;
    int n = 0, frac = -1;
    for (; p < e; p++) {
        if (*p == '.') {
            frac = 0;
            continue;
        }
        if (++n > 15)
            return NAN;
        m = m * 10 + (*p - '0');
        if (frac >= 0)
            frac++;
    }
    return (double)m / POW10[frac < 0 ? 0 : frac];
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

/* mem value "(r1,w2,f3,t4)" in [p, e) (_ss_line.MEM_RE). */
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

/* One ("comm",pid=N,fd=N) at p: the position after its ')', or NULL. Names without '"' or control
 * bytes only (then _ss_line.USERS_RE and OWNER_RE cut them the same way); pid and fd are C ints. */
static const unsigned char *owner(const unsigned char *p, const unsigned char *e,
                                  const unsigned char **comm, const unsigned char **comm_end,
                                  int64_t *pid, int64_t *fd)
{
    if (e - p < 2 || p[0] != '(' || p[1] != '"')
        return NULL;
    p += 2;
    *comm = p;
    while (p < e && *p != '"') {
        if (*p < 0x20 || *p == 0x7f)
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
 * position just after the block's closing ')', or NULL. */
static const unsigned char *users(const unsigned char *p, const unsigned char *e)
{
    const unsigned char *name, *name_end;
    int64_t pid, fd;
    for (;;) {
        p = owner(p, e, &name, &name_end, &pid, &fd);
        if (!p)
            return NULL;
        if (p < e && *p == ',')
            p++;
        else if (p < e && *p == ')')
            return p + 1;
        else
            return NULL;
    }
}

/* The next token at or after p (a run of non-WS bytes): its start, and its end in *te; *ctl is
 * set when it holds a control byte. Runs of 8 spaces (ss's padding) are skipped a word at a time. */
static inline const unsigned char *token(const unsigned char *p, const unsigned char *e,
                                         const unsigned char **te, int *ctl)
{
    static const uint64_t SPACES = 0x2020202020202020ull;
    if (e - p >= 2 && p[0] == ' ' && p[1] > 0x20) { /* one space: ss's usual separator */
        p++;
    } else {
        for (;;) {
            while (e - p >= 8) {
                uint64_t w;
                memcpy(&w, p, 8);
                if (w != SPACES)
                    break;
                p += 8;
            }
            if (p < e && CLASS[*p] == C_WS)
                p++;
            else
                break;
        }
    }
    const unsigned char *s = p;
    for (;;) {
        /* 8 bytes at a time to the first byte <= 0x20 (whitespace or a control byte); the lowest
         * flagged byte is exact (borrows only flag bytes above it; bytes >= 0x80 never flag) */
        while (e - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            uint64_t m = (x - 0x2121212121212121ull) & ~x & 0x8080808080808080ull;
            if (m) {
                p += __builtin_ctzll(m) >> 3;
                break;
            }
            p += 8;
        }
        while (p < e && *p > 0x20)
            p++;
        if (p < e && CLASS[*p] == C_CTL) {
            *ctl = 1;
            p++;
            continue;
        }
        break;
    }
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
 * would keep in `unparsed` or reject makes the record slow: -1). */
static int rest_token(const unsigned char *base, const unsigned char *ts, const unsigned char *te,
                      int64_t n, int64_t i, int64_t *ints, double *rtt, int64_t *spans)
{
    const unsigned char *colon = ts;
    while (te - colon >= 8) { /* 8 bytes at a time: the first ':' */
        uint64_t x;
        memcpy(&x, colon, 8);
        x ^= 0x3a3a3a3a3a3a3a3aull;
        uint64_t m = (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
        if (m) {
            colon += __builtin_ctzll(m) >> 3;
            goto found;
        }
        colon += 8;
    }
    while (colon < te && *colon != ':')
        colon++;
found:
    if (colon == te) {
        if (te - ts == 3 && (memcmp(ts, "<->", 3) == 0 || memcmp(ts, "-->", 3) == 0 ||
                             memcmp(ts, "<--", 3) == 0 || memcmp(ts, "---", 3) == 0))
            return 0;
        return is_bare(ts, te) ? 0 : -1;
    }
    int code = lookup(ts, colon - ts, te - ts);
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
        if (isnan(rtt[i])) {
            double v = decimal_value(vs, a);
            if (isnan(v))
                return -1;
            rtt[i] = v;
        }
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

/* One record [s, e) as _ss_line.parse_line would take it. Returns 0, or -1 for "slow". */
static int record(const unsigned char *base, const unsigned char *s, const unsigned char *e,
                  int64_t n, int64_t i, int64_t *ints, double *rtt, int64_t *spans)
{
    int ctl = 0;
    const unsigned char *te, *ts = token(s, e, &te, &ctl);
    if (ts < e && is_lower(*ts)) { /* [a-z][a-z0-9_]* netid */
        for (const unsigned char *q = ts + 1; q < te; q++)
            if (!(is_lower(*q) || is_digit(*q) || *q == '_'))
                return -1;
        SPAN(S_NETID, 0) = ts - base;
        SPAN(S_NETID, 1) = te - base;
        ts = token(te, e, &te, &ctl);
    }
    if (ts >= e || !is_upper(*ts)) /* [A-Z][A-Z0-9_-]* state */
        return -1;
    for (const unsigned char *q = ts + 1; q < te; q++)
        if (!(is_upper(*q) || is_digit(*q) || *q == '_' || *q == '-'))
            return -1;
    SPAN(S_STATE, 0) = ts - base;
    SPAN(S_STATE, 1) = te - base;
    ts = token(te, e, &te, &ctl);
    if ((INT(I_RECV_Q) = digits(ts, te)) < 0)
        return -1;
    ts = token(te, e, &te, &ctl);
    if ((INT(I_SEND_Q) = digits(ts, te)) < 0)
        return -1;
    ts = token(te, e, &te, &ctl);
    if (ts >= e || address(base, ts, te, &SPAN(S_LADDR, 0), &SPAN(S_LADDR, 1), &SPAN(S_LPORT, 0),
                           &SPAN(S_LPORT, 1)) < 0)
        return -1;
    ts = token(te, e, &te, &ctl);
    if (ts >= e || address(base, ts, te, &SPAN(S_PADDR, 0), &SPAN(S_PADDR, 1), &SPAN(S_PPORT, 0),
                           &SPAN(S_PPORT, 1)) < 0)
        return -1;
    if (ctl)
        return -1;
    const unsigned char *p = te;
    /* users:(...) right after the peer (_ss_line.USERS_RE) */
    const unsigned char *q = p;
    while (q < e && is_ws(*q))
        q++;
    if (q > p && e - q >= 7 && memcmp(q, "users:(", 7) == 0) {
        const unsigned char *end = users(q + 7, e);
        if (!end || (end < e && !is_ws(*end)))
            return -1;
        SPAN(S_USERS, 0) = q + 7 - base;
        SPAN(S_USERS, 1) = end - 1 - base;
        p = end;
    }
    const unsigned char *pending = NULL, *pend = NULL; /* "send"-like word waiting for its rate */
    for (;;) {
        ts = token(p, e, &te, &ctl);
        if (ctl)
            return -1;
        if (ts >= e)
            break;
        p = te;
        if (pending) {
            const unsigned char *w = pending, *we = pend;
            pending = NULL;
            if (is_rate(ts, te))
                continue; /* "send 1.2Mbps": both tokens taken */
            if (rest_token(base, w, we, n, i, ints, rtt, spans) < 0)
                return -1;
        }
        if ((te - ts == 4 && memcmp(ts, "send", 4) == 0) ||
            (te - ts == 11 && memcmp(ts, "pacing_rate", 11) == 0) ||
            (te - ts == 13 && memcmp(ts, "delivery_rate", 13) == 0)) {
            pending = ts;
            pend = te;
            continue;
        }
        if (rest_token(base, ts, te, n, i, ints, rtt, spans) < 0)
            return -1;
    }
    if (pending && rest_token(base, pending, pend, n, i, ints, rtt, spans) < 0)
        return -1;
    return 0;
}
#undef INT
#undef SPAN
#undef SETDEFAULT_SPAN

/* ---- split ---------------------------------------------------------------------------------- */

/* [p, e) starts with `word` then at least one WS byte: the position after that WS run, or NULL. */
static const unsigned char *word_ws(const unsigned char *p, const unsigned char *e, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(e - p) <= n || memcmp(p, word, n) != 0 || !is_ws(p[n]))
        return NULL;
    p += n;
    while (p < e && is_ws(*p))
        p++;
    return p;
}

/* _ss_line.HEADER_RE: WS* (Netid WS+)? State WS+ Recv-Q WS+ Send-Q WS */
static int is_header(const unsigned char *p, const unsigned char *e)
{
    while (p < e && is_ws(*p))
        p++;
    const unsigned char *q = word_ws(p, e, "Netid");
    if (q)
        p = q;
    p = word_ws(p, e, "State");
    p = p ? word_ws(p, e, "Recv-Q") : NULL;
    return p && word_ws(p, e, "Send-Q") != NULL;
}

static int is_blank(const unsigned char *p, const unsigned char *e)
{
    for (; p < e; p++)
        if (!is_ws(*p))
            return 0;
    return 1;
}

/* _ss_line.START_RE: can this physical line start a socket record?
 * WS* ([a-z][a-z0-9_]* WS+)? [A-Z][A-Z0-9_-]* WS+ [0-9]+ WS+ [0-9]+ (WS|end) -- or a header. */
static int can_start(const unsigned char *p, const unsigned char *e)
{
    const unsigned char *s = p;
    while (p < e && is_ws(*p))
        p++;
    if (p < e && is_lower(*p)) {
        const unsigned char *q = p + 1;
        while (q < e && (is_lower(*q) || is_digit(*q) || *q == '_'))
            q++;
        if (q < e && is_ws(*q)) {
            while (q < e && is_ws(*q))
                q++;
            p = q;
        }
    }
    if (p < e && is_upper(*p)) {
        p++;
        while (p < e && (is_upper(*p) || is_digit(*p) || *p == '_' || *p == '-'))
            p++;
        for (int k = 0; k < 2; k++) {
            if (p >= e || !is_ws(*p))
                return is_header(s, e);
            while (p < e && is_ws(*p))
                p++;
            if (p >= e || !is_digit(*p))
                return is_header(s, e);
            while (p < e && is_digit(*p))
                p++;
        }
        if (p == e || is_ws(*p))
            return 1;
    }
    return is_header(s, e);
}

/* _ss_line.is_open: the record's users:((" block runs off its end inside a process name. From the
 * first "users:((", owners are ("<name>",pid=N,fd=N) where the name ends at the first
 * `",pid=N,fd=N)`; they are separated by ','. Open when no such end follows an owner's start. */
static int is_open(const unsigned char *p, const unsigned char *e)
{
    static const char USERS[] = "users:((";
    const unsigned char *u = NULL;
    for (const unsigned char *q = p; e - q >= 8; q++)
        if (*q == 'u' && memcmp(q, USERS, 8) == 0) {
            u = q;
            break;
        }
    if (!u)
        return 0;
    p = u + 7;
    for (;;) {
        if (e - p < 2 || p[0] != '(' || p[1] != '"')
            return 0;
        const unsigned char *q = p + 2, *end = NULL;
        for (; q < e && !end; q++) {
            if (*q != '"' || e - q < 7 || memcmp(q, "\",pid=", 6) != 0 || !is_digit(q[6]))
                continue;
            const unsigned char *r = q + 6;
            while (r < e && is_digit(*r))
                r++;
            if (e - r < 5 || memcmp(r, ",fd=", 4) != 0 || !is_digit(r[4]))
                continue;
            r += 4;
            while (r < e && is_digit(*r))
                r++;
            if (r < e && *r == ')')
                end = r + 1;
        }
        if (!end)
            return 1;
        if (end < e && *end == ',')
            p = end + 1;
        else
            return 0;
    }
}

/* count_lines(data) -> the number of b"\n" in data (without the GIL). */
static PyObject *count_lines(PyObject *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    int64_t k = 0;
    Py_BEGIN_ALLOW_THREADS
    const char *p = data.buf, *e = p + data.len;
    while (p < e && (p = memchr(p, '\n', e - p)) != NULL) {
        k++;
        p++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromLongLong(k);
}

/* split(data, starts, ends, numbers) -> n
 *   Records of data (_ss_line.records): starts/ends (int64, byte offsets; the end excludes the
 *   last line's newline) and the 1-based number of each one's first physical line; blank and header
 *   records are left out. -1 when the arrays are too small (data.count(b"\n") + 1 always do). */
static PyObject *split(PyObject *self, PyObject *args)
{
    Py_buffer data, bs, be, bn;
    if (!PyArg_ParseTuple(args, "y*w*w*w*", &data, &bs, &be, &bn))
        return NULL;
    PyObject *ret = NULL;
    int64_t cap = bs.len / 8, k = 0;
    if (be.len / 8 < cap)
        cap = be.len / 8;
    if (bn.len / 8 < cap)
        cap = bn.len / 8;
    const unsigned char *b = data.buf, *end = b + data.len;
    int64_t *S = bs.buf, *E = be.buf, *N = bn.buf;
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *rs = NULL, *re = NULL; /* the record being built */
    int64_t rno = 0, no = 0;
    const unsigned char *p = b;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', end - p);
        const unsigned char *le = nl ? nl : end;
        no++;
        if (rs && (*p == '\t' || (!can_start(p, le) && is_open(rs, re)))) {
            re = le; /* a continuation line, or the rest of a process name */
        } else {
            if (rs && !is_blank(rs, re) && !is_header(rs, re)) {
                if (k >= cap) {
                    full = 1;
                    break;
                }
                S[k] = rs - b, E[k] = re - b, N[k] = rno, k++;
            }
            rs = p, re = le, rno = no;
        }
        p = nl ? nl + 1 : end;
    }
    if (!full && rs && !is_blank(rs, re) && !is_header(rs, re)) {
        if (k >= cap)
            full = 1;
        else
            S[k] = rs - b, E[k] = re - b, N[k] = rno, k++;
    }
    Py_END_ALLOW_THREADS
    ret = PyLong_FromLongLong(full ? -1 : k);
    PyBuffer_Release(&data);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&be);
    PyBuffer_Release(&bn);
    return ret;
}

/* ---- columns -------------------------------------------------------------------------------- */

static int need(Py_buffer *b, Py_ssize_t bytes, const char *what)
{
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "_sstok: %s holds %zd bytes, needs %zd", what, b->len, bytes);
        return -1;
    }
    return 0;
}

/* columns(data, starts, ends, slow, ints, rtt, spans[, start, end])
 *   data: the text (bytes-like); starts/ends: int64[n] records as split() gave them; slow: uint8[n]
 *   (out: 1 for records the reference parser must take); ints: int64[N_INT*n] (out, -1 = absent);
 *   rtt: float64[n] (out, NaN = absent); spans: int64[N_SPAN*2*n] (out, -1 = absent). Only records
 *   start..end-1 are read and only their entries written, so threads can fill disjoint ranges of
 *   the same arrays. Runs without the GIL. */
static PyObject *columns(PyObject *self, PyObject *args)
{
    Py_buffer data, bs, be, slow, ints, rtt, spans;
    Py_ssize_t start = 0, end = -1;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*|nn", &data, &bs, &be, &slow, &ints, &rtt, &spans,
                          &start, &end))
        return NULL;
    PyObject *ret = NULL;
    int64_t n = slow.len;
    if (end < 0)
        end = n;
    if (start < 0 || start > end || end > n) {
        PyErr_SetString(PyExc_ValueError, "_sstok: record range out of bounds");
        goto done;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_sstok: configure() first");
        goto done;
    }
    if (need(&bs, n * 8, "starts") < 0 || need(&be, n * 8, "ends") < 0 ||
        need(&ints, N_INT * n * 8, "ints") < 0 || need(&rtt, n * 8, "rtt") < 0 ||
        need(&spans, N_SPAN * 2 * n * 8, "spans") < 0)
        goto done;
    const int64_t *S = bs.buf, *E = be.buf;
    for (int64_t i = start; i < end; i++)
        if (S[i] < 0 || S[i] > E[i] || E[i] > data.len) {
            PyErr_SetString(PyExc_ValueError, "_sstok: record offsets out of range");
            goto done;
        }
    const unsigned char *base = data.buf;
    unsigned char *sl = slow.buf;
    int64_t *iv = ints.buf, *sv = spans.buf;
    double *rv = rtt.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int c = 0; c < N_INT; c++) /* -1: absent */
        memset(iv + c * n + start, 0xff, (size_t)((end - start) * 8));
    for (int c = 0; c < 2 * N_SPAN; c++)
        memset(sv + c * n + start, 0xff, (size_t)((end - start) * 8));
    for (int64_t i = start; i < end; i++)
        rv[i] = NAN;
    for (int64_t i = start; i < end; i++) {
        sl[i] = 0;
        if (record(base, base + S[i], base + E[i], n, i, iv, rv, sv) < 0) {
            sl[i] = 1;
            for (int c = 0; c < N_INT; c++)
                iv[c * n + i] = -1;
            for (int c = 0; c < 2 * N_SPAN; c++)
                sv[c * n + i] = -1;
            rv[i] = NAN;
        }
    }
    Py_END_ALLOW_THREADS
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&be);
    PyBuffer_Release(&slow);
    PyBuffer_Release(&ints);
    PyBuffer_Release(&rtt);
    PyBuffer_Release(&spans);
    return ret;
}

/* ---- owners --------------------------------------------------------------------------------- */

/* The tuple of (comm, pid, fd) tuples of one users:(...) body [p, e) as columns() checked it. */
static PyObject *owner_tuple(const unsigned char *p, const unsigned char *e)
{
    PyObject *list = PyList_New(0), *out = NULL;
    if (!list)
        return NULL;
    while (p < e) {
        const unsigned char *name, *name_end;
        int64_t pid, fd;
        p = owner(p, e, &name, &name_end, &pid, &fd);
        if (!p || (p < e && *p != ',')) {
            PyErr_SetString(PyExc_ValueError, "_sstok: a users:(...) body changed between passes");
            goto done;
        }
        if (p < e)
            p++;
        PyObject *t = Py_BuildValue("(NLL)", PyUnicode_DecodeUTF8((const char *)name,
                                                                  name_end - name, "strict"),
                                    (long long)pid, (long long)fd);
        if (!t)
            goto done;
        int rc = PyList_Append(list, t);
        Py_DECREF(t);
        if (rc < 0)
            goto done;
    }
    out = PyList_AsTuple(list);
done:
    Py_DECREF(list);
    return out;
}

/* owners(data, users_start, users_end) -> list
 *   users_*: int64[n] spans of users:(...) bodies as columns() wrote them (-1: none). One tuple of
 *   (comm, pid, fd) per record, () where there is none; records with the same body text share one
 *   tuple (a batch holds the same sockets in many snapshots). */
static PyObject *owners(PyObject *self, PyObject *args)
{
    Py_buffer data, us, ue;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &us, &ue))
        return NULL;
    PyObject *out = NULL, *seen = NULL, *empty = NULL;
    int64_t n = us.len / 8;
    if (need(&ue, n * 8, "users_end") < 0)
        goto done;
    const unsigned char *base = data.buf;
    const int64_t *S = us.buf, *E = ue.buf;
    if (!(out = PyList_New(n)) || !(seen = PyDict_New()) || !(empty = PyTuple_New(0)))
        goto fail;
    for (int64_t i = 0; i < n; i++) {
        PyObject *t;
        if (S[i] < 0) {
            t = Py_NewRef(empty);
        } else {
            if (S[i] > E[i] || E[i] > data.len) {
                PyErr_SetString(PyExc_ValueError, "_sstok: users:(...) span out of range");
                goto fail;
            }
            PyObject *key = PyBytes_FromStringAndSize((const char *)base + S[i], E[i] - S[i]);
            if (!key)
                goto fail;
            t = PyDict_GetItemWithError(seen, key);
            if (t) {
                Py_INCREF(t);
            } else if (PyErr_Occurred() || !(t = owner_tuple(base + S[i], base + E[i])) ||
                       PyDict_SetItem(seen, key, t) < 0) {
                Py_XDECREF(t);
                Py_DECREF(key);
                goto fail;
            }
            Py_DECREF(key);
        }
        PyList_SET_ITEM(out, i, t);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    Py_XDECREF(seen);
    Py_XDECREF(empty);
    PyBuffer_Release(&data);
    PyBuffer_Release(&us);
    PyBuffer_Release(&ue);
    return out;
}

/* ---- gather --------------------------------------------------------------------------------- */

/* gather(data, starts, ends, offsets) -> bytes
 *   The spans data[starts[i]:ends[i]] (-1: absent, taken as empty) concatenated; offsets (int64,
 *   n + 1 entries, out) gets where each one starts in the result: an Arrow string column. */
static PyObject *gather(PyObject *self, PyObject *args)
{
    Py_buffer data, bs, be, bo;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &data, &bs, &be, &bo))
        return NULL;
    PyObject *out = NULL;
    int64_t n = bs.len / 8, total = 0;
    if (need(&be, n * 8, "ends") < 0 || need(&bo, (n + 1) * 8, "offsets") < 0)
        goto done;
    const int64_t *S = bs.buf, *E = be.buf;
    for (int64_t i = 0; i < n; i++) {
        if (S[i] < 0)
            continue;
        if (S[i] > E[i] || E[i] > data.len) {
            PyErr_SetString(PyExc_ValueError, "_sstok: span out of range");
            goto done;
        }
        total += E[i] - S[i];
    }
    if (!(out = PyBytes_FromStringAndSize(NULL, total)))
        goto done;
    char *dst = PyBytes_AS_STRING(out);
    const char *src = data.buf;
    int64_t *O = bo.buf, at = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < n; i++) {
        O[i] = at;
        if (S[i] >= 0) {
            memcpy(dst + at, src + S[i], (size_t)(E[i] - S[i]));
            at += E[i] - S[i];
        }
    }
    O[n] = at;
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&be);
    PyBuffer_Release(&bo);
    return out;
}

/* ---- utf8: a str's UTF-8 as a buffer -------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *str;
    const char *ptr;
    Py_ssize_t len;
} Utf8;

static int utf8_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    Utf8 *u = (Utf8 *)self;
    return PyBuffer_FillInfo(view, self, (void *)u->ptr, u->len, 1, flags);
}

static void utf8_dealloc(PyObject *self)
{
    Py_XDECREF(((Utf8 *)self)->str);
    PyObject_Free(self);
}

static PyBufferProcs utf8_buffer = {utf8_getbuffer, NULL};

static PyTypeObject Utf8Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_sstok.Utf8",
    .tp_basicsize = sizeof(Utf8),
    .tp_dealloc = utf8_dealloc,
    .tp_as_buffer = &utf8_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The UTF-8 bytes of a str, read-only, kept alive with the str.",
};

/* utf8(text) -> a read-only buffer of text's UTF-8 bytes: the str's own storage when it is ASCII,
 * else the UTF-8 copy CPython caches on the str (made once). */
static PyObject *utf8(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_sstok.utf8: a str is needed");
        return NULL;
    }
    Py_ssize_t len;
    const char *ptr = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!ptr)
        return NULL;
    Utf8 *u = PyObject_New(Utf8, &Utf8Type);
    if (!u)
        return NULL;
    u->str = Py_NewRef(arg);
    u->ptr = ptr;
    u->len = len;
    return (PyObject *)u;
}

/* ---- module --------------------------------------------------------------------------------- */

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
    {"count_lines", count_lines, METH_O, "The number of newline bytes in a buffer."},
    {"split", split, METH_VARARGS, "Cut ss text into socket records (blank and header left out)."},
    {"columns", columns, METH_VARARGS, "Fill the column arrays of records, or flag them slow."},
    {"owners", owners, METH_VARARGS, "users:(...) bodies -> tuples of (comm, pid, fd)."},
    {"gather", gather, METH_VARARGS, "Spans of a buffer -> one bytes object and its offsets."},
    {"utf8", utf8, METH_O, "A str's UTF-8 bytes as a read-only buffer (no copy for ASCII)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sstok",
                                     "C engine of read_ss (see _ss_fast.py).", -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sstok(void)
{
    init_classes();
    for (int k = 0; k < N_COLUMN_KEYS; k++)
        if (table_add(COLUMN_KEYS[k].key, strlen(COLUMN_KEYS[k].key), COLUMN_KEYS[k].code) < 0) {
            PyErr_SetString(PyExc_RuntimeError, "_sstok: key table");
            return NULL;
        }
    if (PyType_Ready(&Utf8Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "ABI", ABI) < 0 || PyModule_AddIntConstant(m, "N_INT", N_INT) < 0 ||
              PyModule_AddIntConstant(m, "N_SPAN", N_SPAN) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
