/* config.c - petal.toml via libinih plus a TOML-subset value layer; "k=v" overrides. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"

#define MSG_CAP 256

/* ---- messages ----------------------------------------------------------------------------- */

static void msgf(char *m, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
msgf(char *m, size_t cap, const char *fmt, ...)
{
    if (m == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, cap, fmt, ap);
    va_end(ap);
}

/* At most this many bytes of a user's token are quoted back in a message. */
#define TOK_SHOWN 60
static int
tok_shown(size_t n)
{
    return n > TOK_SHOWN ? TOK_SHOWN : (int)n;
}

/* ---- typed values ------------------------------------------------------------------------- */

typedef struct tval {
    uint32_t type; /* PETAL_VALUE_INT64, _DOUBLE, _BOOL or _STRING */
    int64_t i64;
    double f64;
    int32_t boolean;
    char *str; /* owned, NUL-terminated */
    size_t len;
} tval_t;

static void
tval_clear(tval_t *v)
{
    free(v->str);
    memset(v, 0, sizeof(*v));
}

static petal_value_t
tval_value(const tval_t *v)
{
    switch (v->type) {
    case PETAL_VALUE_INT64:
        return petal_value_i64(v->i64);
    case PETAL_VALUE_DOUBLE:
        return petal_value_f64(v->f64);
    case PETAL_VALUE_BOOL:
        return petal_value_bool(v->boolean);
    default:
        return petal_value_str(v->str, v->len);
    }
}

static int
is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_bare(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-';
}

static int
hex_value(char c)
{
    if (is_digit(c)) {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int
utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t extra;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= extra) {
            return 0;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
            return 0;
        }
        i += extra + 1;
    }
    return 1;
}

static size_t
utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * A "basic" or 'literal' string starting at p[0] (the quote), within p[0..n). On success *used
 * is the length including both quotes and v is a STRING.
 */
static int
parse_string(const char *p, size_t n, size_t *used, tval_t *v, char *msg, size_t cap)
{
    char q = p[0];
    if (n >= 3 && p[1] == q && p[2] == q) {
        msgf(msg, cap, "multi-line strings are not supported");
        return PETAL_ECONFIG;
    }
    char *out = malloc(n + 1); /* decoding never makes a string longer */
    if (out == NULL) {
        msgf(msg, cap, "out of memory");
        return PETAL_ENOMEM;
    }
    size_t o = 0;
    size_t i = 1;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c == (unsigned char)q) {
            out[o] = '\0';
            if (!utf8_valid((const unsigned char *)out, o)) {
                msgf(msg, cap, "string is not valid UTF-8");
                goto fail;
            }
            memset(v, 0, sizeof(*v));
            v->type = PETAL_VALUE_STRING;
            v->str = out;
            v->len = o;
            *used = i + 1;
            return 0;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            msgf(msg, cap, "control character 0x%02x in a string (write it as an escape)", c);
            goto fail;
        }
        if (q == '\'' || c != '\\') {
            out[o++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= n) {
            break;
        }
        char e = p[i + 1];
        i += 2;
        switch (e) {
        case 'b':
            out[o++] = '\b';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case '"':
            out[o++] = '"';
            break;
        case '\\':
            out[o++] = '\\';
            break;
        case 'u':
        case 'U': {
            size_t digits = e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            if (n - i < digits) {
                msgf(msg, cap, "\\%c needs %zu hex digits", e, digits);
                goto fail;
            }
            for (size_t k = 0; k < digits; k++) {
                int h = hex_value(p[i + k]);
                if (h < 0) {
                    msgf(msg, cap, "\\%c needs %zu hex digits", e, digits);
                    goto fail;
                }
                cp = (cp << 4) | (uint32_t)h;
            }
            i += digits;
            if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                msgf(msg, cap, "\\%c%0*X is not an allowed character", e, (int)digits, cp);
                goto fail;
            }
            o += utf8_put(out + o, cp);
            break;
        }
        default:
            if ((unsigned char)e < 0x20 || e == 0x7f) {
                msgf(msg, cap, "invalid escape in a string");
            } else {
                msgf(msg, cap, "invalid escape \\%c in a string (use \\\\ for a backslash)", e);
            }
            goto fail;
        }
    }
    msgf(msg, cap, "unterminated string (missing closing %c)", q);
fail:
    free(out);
    return PETAL_ECONFIG;
}

/* Decimal digits with single '_' between digits, appended to clean[]. 0, or -1 if none. */
static int
scan_digits(const char *t, size_t n, size_t *i, char *clean, size_t *o)
{
    if (*i >= n || !is_digit(t[*i])) {
        return -1;
    }
    while (*i < n) {
        if (is_digit(t[*i])) {
            clean[(*o)++] = t[(*i)++];
        } else if (t[*i] == '_' && *i + 1 < n && is_digit(t[*i + 1])) {
            (*i)++;
        } else {
            break;
        }
    }
    return 0;
}

static int
parse_radix(const char *t, size_t n, tval_t *v, char *msg, size_t cap)
{
    unsigned base = t[1] == 'x' ? 16 : t[1] == 'o' ? 8 : 2;
    uint64_t u = 0;
    size_t digits = 0;
    for (size_t i = 2; i < n; i++) {
        int d = hex_value(t[i]);
        if (t[i] == '_' && digits > 0 && i + 1 < n && hex_value(t[i + 1]) >= 0 &&
            (unsigned)hex_value(t[i + 1]) < base) {
            continue;
        }
        if (d < 0 || (unsigned)d >= base) {
            msgf(msg, cap, "invalid number '%.*s'", tok_shown(n), t);
            return PETAL_ECONFIG;
        }
        if (u > ((uint64_t)INT64_MAX - (uint64_t)d) / base) {
            msgf(msg, cap, "integer '%.*s' is out of range (64-bit signed)", tok_shown(n), t);
            return PETAL_ECONFIG;
        }
        u = u * base + (uint64_t)d;
        digits++;
    }
    if (digits == 0) {
        msgf(msg, cap, "invalid number '%.*s'", tok_shown(n), t);
        return PETAL_ECONFIG;
    }
    v->type = PETAL_VALUE_INT64;
    v->i64 = (int64_t)u;
    return 0;
}

/*
 * An unquoted TOML scalar: true/false, integer or float. On failure msg says why; *numeric
 * tells whether the token looked like a number (then msg is number-specific).
 */
static int
parse_bare(const char *t, size_t n, tval_t *v, int *numeric, char *msg, size_t cap)
{
    memset(v, 0, sizeof(*v));
    *numeric = 0;
    if (n == 4 && memcmp(t, "true", 4) == 0) {
        v->type = PETAL_VALUE_BOOL;
        v->boolean = 1;
        return 0;
    }
    if (n == 5 && memcmp(t, "false", 5) == 0) {
        v->type = PETAL_VALUE_BOOL;
        return 0;
    }
    size_t i = 0;
    char sign = 0;
    if (n > 0 && (t[0] == '+' || t[0] == '-')) {
        sign = t[0];
        i = 1;
    }
    if (n - i == 3 && (memcmp(t + i, "inf", 3) == 0 || memcmp(t + i, "nan", 3) == 0)) {
        v->type = PETAL_VALUE_DOUBLE;
        v->f64 = t[i] == 'i' ? INFINITY : NAN;
        if (sign == '-') {
            v->f64 = -v->f64;
        }
        return 0;
    }
    if (i >= n || !is_digit(t[i])) {
        msgf(msg, cap, "invalid value '%.*s' (strings need quotes: \"%.*s\")", tok_shown(n), t,
             tok_shown(n), t);
        return PETAL_ECONFIG;
    }
    *numeric = 1;
    if (sign == 0 && n > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'o' || t[1] == 'b')) {
        return parse_radix(t, n, v, msg, cap);
    }

    char clean[128];
    size_t o = 0;
    if (n >= sizeof(clean)) {
        msgf(msg, cap, "number '%.*s...' is too long", TOK_SHOWN, t);
        return PETAL_ECONFIG;
    }
    if (sign != 0) {
        clean[o++] = sign;
    }
    size_t int_start = i;
    int is_float = 0;
    if (scan_digits(t, n, &i, clean, &o) != 0) {
        goto invalid;
    }
    if (i - int_start > 1 && t[int_start] == '0') {
        msgf(msg, cap, "leading zeros are not allowed in '%.*s'", tok_shown(n), t);
        return PETAL_ECONFIG;
    }
    if (i < n && t[i] == '.') {
        clean[o++] = '.';
        i++;
        if (scan_digits(t, n, &i, clean, &o) != 0) {
            goto invalid;
        }
        is_float = 1;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        clean[o++] = 'e';
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) {
            clean[o++] = t[i++];
        }
        if (scan_digits(t, n, &i, clean, &o) != 0) {
            goto invalid;
        }
        is_float = 1;
    }
    if (i != n) {
        goto invalid;
    }
    clean[o] = '\0';
    errno = 0;
    if (is_float) {
        double d = strtod(clean, NULL);
        if (errno == ERANGE && isinf(d)) {
            msgf(msg, cap, "float '%.*s' is out of range", tok_shown(n), t);
            return PETAL_ECONFIG;
        }
        v->type = PETAL_VALUE_DOUBLE;
        v->f64 = d;
        return 0;
    }
    long long ll = strtoll(clean, NULL, 10);
    if (errno == ERANGE) {
        msgf(msg, cap, "integer '%.*s' is out of range (64-bit signed)", tok_shown(n), t);
        return PETAL_ECONFIG;
    }
    v->type = PETAL_VALUE_INT64;
    v->i64 = (int64_t)ll;
    return 0;

invalid:
    msgf(msg, cap, "invalid number '%.*s'", tok_shown(n), t);
    return PETAL_ECONFIG;
}

static int
looks_like_date(const char *t, size_t n)
{
    if (n >= 8 && is_digit(t[0]) && is_digit(t[1]) && is_digit(t[2]) && is_digit(t[3]) &&
        t[4] == '-' && is_digit(t[5]) && is_digit(t[6]) && t[7] == '-') {
        return 1;
    }
    return n >= 5 && is_digit(t[0]) && is_digit(t[1]) && t[2] == ':' && is_digit(t[3]) &&
           is_digit(t[4]);
}

/* A TOML value at p[0..n) (p[0] is not whitespace); *used is how much it took. */
static int
parse_toml_value(const char *p, size_t n, size_t *used, tval_t *v, char *msg, size_t cap)
{
    if (n == 0 || p[0] == '#') {
        msgf(msg, cap, "missing value");
        return PETAL_ECONFIG;
    }
    switch (p[0]) {
    case '[':
        msgf(msg, cap, "arrays are not supported");
        return PETAL_ECONFIG;
    case '{':
        msgf(msg, cap, "inline tables are not supported");
        return PETAL_ECONFIG;
    case '"':
    case '\'':
        return parse_string(p, n, used, v, msg, cap);
    default:
        break;
    }
    size_t k = 0;
    while (k < n && !is_ws(p[k]) && p[k] != '#') {
        k++;
    }
    if (looks_like_date(p, k)) {
        msgf(msg, cap, "dates and times are not supported");
        return PETAL_ECONFIG;
    }
    int numeric;
    int rc = parse_bare(p, k, v, &numeric, msg, cap);
    if (rc == 0) {
        *used = k;
    }
    return rc;
}

int
pt_config_parse_value(const char *text, petal_value_t *out, char **owned, char *err, size_t err_cap)
{
    char msg[MSG_CAP];
    tval_t v;
    size_t used = 0;

    if (text == NULL || out == NULL || owned == NULL) {
        msgf(err, err_cap, "invalid argument");
        return PETAL_EINVAL;
    }
    size_t n = strlen(text);
    size_t i = 0;
    while (i < n && is_ws(text[i])) {
        i++;
    }
    while (n > i && is_ws(text[n - 1])) {
        n--;
    }
    int rc = parse_toml_value(text + i, n - i, &used, &v, msg, sizeof(msg));
    if (rc != 0) {
        msgf(err, err_cap, "%s", msg);
        return rc;
    }
    size_t end = i + used;
    while (end < n && is_ws(text[end])) {
        end++;
    }
    if (end != n) {
        msgf(err, err_cap, "unexpected text after the value: '%.*s'", tok_shown(n - end),
             text + end);
        tval_clear(&v);
        return PETAL_ECONFIG;
    }
    *out = tval_value(&v);
    *owned = v.str;
    return 0;
}

/* ---- the manifest parser ---------------------------------------------------------------- */

typedef struct seen {
    char *name;
    int line;
} seen_t;

typedef struct seen_list {
    seen_t *v;
    size_t n, cap;
} seen_list_t;

typedef struct parser {
    const char *text;
    size_t len;
    size_t pos;
    const char *label;
    int lineno;
    int failed;
    int rc;
    char *err;
    size_t err_cap;
    tval_t cur; /* the value on the current key line */
    seen_list_t keys;
    seen_list_t sections;
    pt_manifest_t *m;
    petal_configrecord_t *config;
    int has_app;
} parser_t;

static void fail(parser_t *ps, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first error as "LABEL:LINE: message". */
static void
fail(parser_t *ps, int rc, const char *fmt, ...)
{
    char msg[MSG_CAP + 64];
    if (ps->failed) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    msgf(ps->err, ps->err_cap, "%s:%d: %s", ps->label, ps->lineno, msg);
    ps->failed = 1;
    ps->rc = rc;
}

static void
seen_free(seen_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static const seen_t *
seen_find(const seen_list_t *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].name, name) == 0) {
            return &l->v[i];
        }
    }
    return NULL;
}

static int
seen_add(seen_list_t *l, const char *name, int line)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        seen_t *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return PETAL_ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].name = strdup(name);
    if (l->v[l->n].name == NULL) {
        return PETAL_ENOMEM;
    }
    l->v[l->n].line = line;
    l->n++;
    return 0;
}

/* Bare key parts joined by '.', into out[0..max]. `what` is "key" or "section name". */
static int
parse_dotted(parser_t *ps, const char *p, size_t n, size_t *used, char *out, size_t max,
             const char *what)
{
    size_t i = 0, o = 0;
    for (;;) {
        while (i < n && is_ws(p[i])) {
            i++;
        }
        if (i < n && (p[i] == '"' || p[i] == '\'')) {
            fail(ps, PETAL_ECONFIG, "quoted keys are not supported (use A-Z a-z 0-9 _ -)");
            return PETAL_ECONFIG;
        }
        size_t start = i;
        while (i < n && is_bare(p[i])) {
            i++;
        }
        if (i == start) {
            if (i < n && p[i] != ']' && p[i] != '=' && !is_ws(p[i]) && p[i] != '.') {
                fail(ps, PETAL_ECONFIG, "invalid character '%c' in a %s (use A-Z a-z 0-9 _ -)",
                     p[i], what);
            } else {
                fail(ps, PETAL_ECONFIG, "expected a %s", what);
            }
            return PETAL_ECONFIG;
        }
        if (o + (i - start) > max) {
            fail(ps, PETAL_ECONFIG, "%s '%.*s...' is longer than %zu characters", what,
                 i < 40 ? (int)i : 40, p, max);
            return PETAL_ECONFIG;
        }
        memcpy(out + o, p + start, i - start);
        o += i - start;
        out[o] = '\0';
        while (i < n && is_ws(p[i])) {
            i++;
        }
        if (i < n && p[i] == '.') {
            if (o + 1 > max) {
                fail(ps, PETAL_ECONFIG, "%s '%.*s...' is longer than %zu characters", what,
                     i < 40 ? (int)i : 40, p, max);
                return PETAL_ECONFIG;
            }
            out[o++] = '.';
            i++;
            continue;
        }
        break;
    }
    out[o] = '\0';
    *used = i;
    return 0;
}

static int
rest_is_comment(const char *p, size_t n, size_t i)
{
    while (i < n && is_ws(p[i])) {
        i++;
    }
    return i == n || p[i] == '#';
}

/* A section header line; p[0] is '['. */
static int
header_line(parser_t *ps, const char *p, size_t n, char *buf, size_t cap)
{
    char section[PT_CONFIG_MAX_SECTION + 1];
    size_t used;

    if (n > 1 && p[1] == '[') {
        fail(ps, PETAL_ECONFIG, "arrays of tables ([[...]]) are not supported");
        return PETAL_ECONFIG;
    }
    if (parse_dotted(ps, p + 1, n - 1, &used, section, PT_CONFIG_MAX_SECTION, "section name") !=
        0) {
        return PETAL_ECONFIG;
    }
    size_t i = 1 + used;
    if (i >= n || p[i] != ']') {
        fail(ps, PETAL_ECONFIG, "expected ']' after [%s", section);
        return PETAL_ECONFIG;
    }
    if (!rest_is_comment(p, n, i + 1)) {
        fail(ps, PETAL_ECONFIG, "unexpected text after [%s]", section);
        return PETAL_ECONFIG;
    }
    if (strncmp(section, "app.", 4) == 0 && strcmp(section, "app.config") != 0 &&
        strncmp(section, "app.config.", 11) != 0) {
        fail(ps, PETAL_ECONFIG, "unknown section [%s] (petal.toml knows [app] and [app.config])",
             section);
        return PETAL_ECONFIG;
    }
    const seen_t *s = seen_find(&ps->sections, section);
    if (s != NULL) {
        fail(ps, PETAL_ECONFIG, "section [%s] is defined twice (first at line %d)", section,
             s->line);
        return PETAL_ECONFIG;
    }
    if (seen_add(&ps->sections, section, ps->lineno) != 0) {
        fail(ps, PETAL_ENOMEM, "out of memory");
        return PETAL_ENOMEM;
    }
    if (strcmp(section, "app") == 0) {
        ps->has_app = 1;
    }
    snprintf(buf, cap, "[%s]\n", section);
    return 0;
}

/* A key = value line; p[0] is not whitespace, '#' or '['. */
static int
key_line(parser_t *ps, const char *p, size_t n, char *buf, size_t cap)
{
    char key[PT_CONFIG_MAX_KEY + 1];
    char msg[MSG_CAP];
    size_t used;

    if (parse_dotted(ps, p, n, &used, key, PT_CONFIG_MAX_KEY, "key") != 0) {
        return PETAL_ECONFIG;
    }
    size_t i = used;
    if (i >= n || p[i] != '=') {
        if (i < n && p[i] == ':') {
            fail(ps, PETAL_ECONFIG, "expected '=' after key '%s' (TOML writes key = value)", key);
        } else {
            fail(ps, PETAL_ECONFIG, "expected '=' after key '%s'", key);
        }
        return PETAL_ECONFIG;
    }
    i++;
    while (i < n && is_ws(p[i])) {
        i++;
    }
    tval_clear(&ps->cur);
    int rc = parse_toml_value(p + i, n - i, &used, &ps->cur, msg, sizeof(msg));
    if (rc != 0) {
        fail(ps, rc, "%s (key '%s')", msg, key);
        return rc;
    }
    if (!rest_is_comment(p, n, i + used)) {
        tval_clear(&ps->cur);
        fail(ps, PETAL_ECONFIG, "unexpected text after the value of key '%s'", key);
        return PETAL_ECONFIG;
    }
    snprintf(buf, cap, "%s=\n", key);
    return 0;
}

/*
 * The libinih reader: hands inih one normalized line at a time ("[section]\n", "key=\n" or
 * "\n") after checking the real line against the TOML subset and parsing its value into
 * ps->cur, which the handler below then stores. inih never sees a value, so its own rules
 * (';' comments, ':' separators, continuation lines, line length) cannot change one.
 */
static char *
toml_reader(char *buf, int num, void *stream)
{
    parser_t *ps = stream;
    if (ps->failed || ps->pos >= ps->len) {
        return NULL;
    }
    if (num < PT_CONFIG_MAX_KEY + 8) {
        fail(ps, PETAL_ECONFIG, "libinih's line buffer is too small (%d bytes)", num);
        return NULL;
    }
    const char *line = ps->text + ps->pos;
    size_t rest = ps->len - ps->pos;
    const char *nl = memchr(line, '\n', rest);
    size_t n = nl != NULL ? (size_t)(nl - line) : rest;
    ps->pos += nl != NULL ? n + 1 : n;
    ps->lineno++;
    if (n > 0 && line[n - 1] == '\r') {
        n--;
    }
    if (ps->lineno == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
        line += 3;
        n -= 3;
    }
    if (memchr(line, '\0', n) != NULL) {
        fail(ps, PETAL_ECONFIG, "NUL byte in the file");
        return NULL;
    }
    size_t i = 0;
    while (i < n && is_ws(line[i])) {
        i++;
    }
    int rc = 0;
    if (i == n || line[i] == '#') {
        snprintf(buf, (size_t)num, "\n");
    } else if (line[i] == '[') {
        rc = header_line(ps, line + i, n - i, buf, (size_t)num);
    } else {
        rc = key_line(ps, line + i, n - i, buf, (size_t)num);
    }
    return rc == 0 ? buf : NULL;
}

static int
check_rel_path(const char *path)
{
    if (path[0] == '\0' || path[0] == '/') {
        return -1;
    }
    const char *s = path;
    while (*s != '\0') {
        const char *e = strchr(s, '/');
        size_t len = e != NULL ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            return -1;
        }
        s += len;
        if (*s == '/') {
            s++;
        }
    }
    return 0;
}

static int
set_config(parser_t *ps, petal_configrecord_t *cfg, const char *key)
{
    petal_value_t pv = tval_value(&ps->cur);
    int rc = petal_configrecord_set(cfg, key, &pv);
    if (rc != 0) {
        fail(ps, rc, "cannot store key '%s': %s", key, petal_strerror(rc));
    }
    return rc;
}

static int
app_key(parser_t *ps, const char *name)
{
    char **slot = NULL;
    if (strcmp(name, "name") == 0) {
        slot = &ps->m->name;
    } else if (strcmp(name, "version") == 0) {
        slot = &ps->m->version;
    } else if (strcmp(name, "description") == 0) {
        slot = &ps->m->description;
    } else if (strcmp(name, "client") == 0) {
        slot = &ps->m->client_file;
    } else if (strcmp(name, "server") == 0) {
        slot = &ps->m->server_file;
    } else {
        fail(ps, PETAL_ECONFIG,
             "unknown key '%s' in [app] (known: name, version, description, client, server; "
             "run config keys go in [app.config])",
             name);
        return PETAL_ECONFIG;
    }
    if (ps->cur.type != PETAL_VALUE_STRING) {
        fail(ps, PETAL_ECONFIG, "'%s' in [app] must be a string (in quotes)", name);
        return PETAL_ECONFIG;
    }
    if ((slot == &ps->m->client_file || slot == &ps->m->server_file) &&
        check_rel_path(ps->cur.str) != 0) {
        fail(ps, PETAL_ECONFIG,
             "%s must be a path inside the app directory, got '%.*s' (no leading '/' or '..')",
             name, tok_shown(ps->cur.len), ps->cur.str);
        return PETAL_ECONFIG;
    }
    if (slot == &ps->m->name && ps->cur.len == 0) {
        fail(ps, PETAL_ECONFIG, "'name' in [app] must not be empty");
        return PETAL_ECONFIG;
    }
    free(*slot);
    *slot = ps->cur.str; /* moved */
    ps->cur.str = NULL;
    return 0;
}

/* Routes one key = value to [app], the run config or another section. */
static int
store_entry(parser_t *ps, const char *section, const char *name)
{
    char full[PT_CONFIG_MAX_SECTION + PT_CONFIG_MAX_KEY + 2];

    if (section[0] == '\0') {
        fail(ps, PETAL_ECONFIG,
             "key '%s' is outside any section (put it under [app] or "
             "[app.config])",
             name);
        return PETAL_ECONFIG;
    }
    snprintf(full, sizeof(full), "%s.%s", section, name);
    const seen_t *s = seen_find(&ps->keys, full);
    if (s != NULL) {
        fail(ps, PETAL_ECONFIG, "key '%s' in [%s] is defined twice (first at line %d)", name,
             section, s->line);
        return PETAL_ECONFIG;
    }
    if (seen_add(&ps->keys, full, ps->lineno) != 0) {
        fail(ps, PETAL_ENOMEM, "out of memory");
        return PETAL_ENOMEM;
    }

    if (strncmp(full, "app.config.", 11) == 0) {
        return set_config(ps, ps->config, full + 11);
    }
    if (strcmp(section, "app") == 0) {
        return app_key(ps, name);
    }
    petal_configrecord_t *rec = petal_recorddict_add_config(ps->m->sections, section);
    if (rec == NULL) {
        fail(ps, PETAL_ENOMEM, "cannot store section [%s]", section);
        return PETAL_ENOMEM;
    }
    return set_config(ps, rec, name);
}

static int
toml_handler(void *user, const char *section, const char *name, const char *value)
{
    parser_t *ps = user;
    (void)value; /* always "": the reader parsed the real value into ps->cur */
    if (ps->failed) {
        return 0;
    }
    int rc = store_entry(ps, section, name);
    tval_clear(&ps->cur);
    return rc == 0;
}

static char *
join_path(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", dir, file);
    }
    return p;
}

void
pt_manifest_free(pt_manifest_t *m)
{
    if (m == NULL) {
        return;
    }
    free(m->name);
    free(m->version);
    free(m->description);
    free(m->app_dir);
    free(m->client_file);
    free(m->server_file);
    free(m->client_path);
    free(m->server_path);
    petal_recorddict_free(m->config_holder);
    petal_recorddict_free(m->sections);
    free(m);
}

petal_recorddict_t *
pt_manifest_take_config(pt_manifest_t *m)
{
    if (m == NULL) {
        return NULL;
    }
    petal_recorddict_t *h = m->config_holder;
    m->config_holder = NULL;
    return h;
}

int
pt_manifest_parse(const char *text, size_t len, const char *label, const char *app_dir,
                  pt_manifest_t **out, char *err, size_t err_cap)
{
    parser_t ps;
    int rc;

    msgf(err, err_cap, "%s", "");
    if ((text == NULL && len > 0) || out == NULL) {
        msgf(err, err_cap, "invalid argument");
        return PETAL_EINVAL;
    }
    memset(&ps, 0, sizeof(ps));
    ps.text = text;
    ps.len = len;
    ps.label = label != NULL ? label : PT_MANIFEST_FILE;
    ps.err = err;
    ps.err_cap = err_cap;
    if (app_dir == NULL || app_dir[0] == '\0') {
        app_dir = ".";
    }

    ps.m = calloc(1, sizeof(*ps.m));
    if (ps.m == NULL) {
        goto nomem;
    }
    ps.m->config_holder = petal_recorddict_alloc();
    ps.m->sections = petal_recorddict_alloc();
    if (ps.m->config_holder == NULL || ps.m->sections == NULL) {
        goto nomem;
    }
    ps.config = petal_recorddict_add_config(ps.m->config_holder, PT_CONFIG_HOLDER_NAME);
    if (ps.config == NULL) {
        goto nomem;
    }

    int line = ini_parse_stream(toml_reader, &ps, toml_handler, &ps);
    if (ps.failed) {
        rc = ps.rc;
        goto fail;
    }
    if (line < 0) {
        goto nomem;
    }
    if (line > 0) { /* inih refused a line the reader accepted: should not happen */
        msgf(err, err_cap, "%s:%d: syntax error", ps.label, line);
        rc = PETAL_ECONFIG;
        goto fail;
    }

    pt_manifest_t *m = ps.m;
    if (!ps.has_app) {
        msgf(err, err_cap, "%s: no [app] section (petal.toml needs [app] with name and client)",
             ps.label);
        rc = PETAL_ECONFIG;
        goto fail;
    }
    if (m->name == NULL) {
        msgf(err, err_cap, "%s: [app] has no name (e.g. name = \"quickstart\")", ps.label);
        rc = PETAL_ECONFIG;
        goto fail;
    }
    if (m->client_file == NULL) {
        msgf(err, err_cap,
             "%s: [app] has no client (the ClientApp plugin, e.g. client = \"client.so\")",
             ps.label);
        rc = PETAL_ECONFIG;
        goto fail;
    }
    if (m->version == NULL && (m->version = strdup("")) == NULL) {
        goto nomem;
    }
    if (m->description == NULL && (m->description = strdup("")) == NULL) {
        goto nomem;
    }
    m->app_dir = realpath(app_dir, NULL);
    if (m->app_dir == NULL && (m->app_dir = strdup(app_dir)) == NULL) {
        goto nomem;
    }
    m->client_path = join_path(m->app_dir, m->client_file);
    if (m->client_path == NULL) {
        goto nomem;
    }
    if (m->server_file != NULL) {
        m->server_path = join_path(m->app_dir, m->server_file);
        if (m->server_path == NULL) {
            goto nomem;
        }
    }
    seen_free(&ps.keys);
    seen_free(&ps.sections);
    *out = m;
    return 0;

nomem:
    msgf(err, err_cap, "%s: out of memory", ps.label);
    rc = PETAL_ENOMEM;
fail:
    tval_clear(&ps.cur);
    seen_free(&ps.keys);
    seen_free(&ps.sections);
    pt_manifest_free(ps.m);
    return rc;
}

int
pt_manifest_load(const char *app_dir, pt_manifest_t **out, char *err, size_t err_cap)
{
    char ebuf[128];
    char *path = NULL;
    char *text = NULL;
    int fd = -1;
    int rc;

    if (app_dir == NULL || app_dir[0] == '\0' || out == NULL) {
        msgf(err, err_cap, "invalid argument");
        return PETAL_EINVAL;
    }
    path = join_path(app_dir, PT_MANIFEST_FILE);
    if (path == NULL) {
        msgf(err, err_cap, "out of memory");
        return PETAL_ENOMEM;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = -errno;
        msgf(err, err_cap, "cannot read %s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
        goto done;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)PT_MANIFEST_MAX_BYTES) {
        msgf(err, err_cap, "cannot read %s: %s", path,
             S_ISREG(st.st_mode) ? "larger than 1 MiB" : "not a regular file");
        rc = PETAL_ECONFIG;
        goto done;
    }
    size_t size = (size_t)st.st_size;
    text = malloc(size + 1);
    if (text == NULL) {
        msgf(err, err_cap, "%s: out of memory", path);
        rc = PETAL_ENOMEM;
        goto done;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, text + got, size - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = -errno;
            msgf(err, err_cap, "cannot read %s: %s", path, strerror_r(-rc, ebuf, sizeof(ebuf)));
            goto done;
        }
        if (r == 0) {
            break; /* the file shrank: parse what is there */
        }
        got += (size_t)r;
    }
    rc = pt_manifest_parse(text, got, path, app_dir, out, err, err_cap);

done:
    if (fd >= 0) {
        close(fd);
    }
    free(text);
    free(path);
    return rc;
}

/* ---- overrides ------------------------------------------------------------------------- */

typedef struct override {
    char *key;
    tval_t v;
} override_t;

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *
type_noun(uint32_t t)
{
    switch (t) {
    case PETAL_VALUE_INT64:
        return "an integer";
    case PETAL_VALUE_UINT64:
        return "a non-negative integer";
    case PETAL_VALUE_DOUBLE:
        return "a float";
    case PETAL_VALUE_BOOL:
        return "a bool (true or false)";
    default:
        return "a string";
    }
}

/* Converts the new value to the existing key's type, or explains why not. */
static int
coerce(const char *what, const char *key, const petal_value_t *old, tval_t *v, int quoted,
       const char *raw, size_t raw_len, char *err, size_t err_cap)
{
    switch (old->type) {
    case PETAL_VALUE_INT64:
        if (!quoted && v->type == PETAL_VALUE_INT64) {
            return 0;
        }
        break;
    case PETAL_VALUE_UINT64:
        if (!quoted && v->type == PETAL_VALUE_INT64 && v->i64 >= 0) {
            return 0; /* stored as uint64 when applied */
        }
        break;
    case PETAL_VALUE_DOUBLE:
        if (!quoted && v->type == PETAL_VALUE_INT64) {
            v->type = PETAL_VALUE_DOUBLE;
            v->f64 = (double)v->i64;
            return 0;
        }
        if (!quoted && v->type == PETAL_VALUE_DOUBLE) {
            return 0;
        }
        break;
    case PETAL_VALUE_BOOL:
        if (!quoted && v->type == PETAL_VALUE_BOOL) {
            return 0;
        }
        break;
    case PETAL_VALUE_STRING:
        if (v->type != PETAL_VALUE_STRING) { /* an unquoted number or bool: keep its text */
            char *s = strndup(raw, raw_len);
            if (s == NULL) {
                msgf(err, err_cap, "%s: out of memory", what);
                return PETAL_ENOMEM;
            }
            tval_clear(v);
            v->type = PETAL_VALUE_STRING;
            v->str = s;
            v->len = raw_len;
        }
        return 0;
    default:
        msgf(err, err_cap, "%s: '%s' holds a list or bytes, which %s cannot set", what, key, what);
        return PETAL_ECONFIG;
    }
    msgf(err, err_cap, "%s: '%s' expects %s, got '%.*s'", what, key, type_noun(old->type),
         tok_shown(raw_len), raw);
    return PETAL_ECONFIG;
}

int
pt_config_parse_overrides(const char *spec, const char *what, petal_configrecord_t *into, char *err,
                          size_t err_cap)
{
    char msg[MSG_CAP];
    override_t *list = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;

    msgf(err, err_cap, "%s", "");
    if (what == NULL) {
        what = "--run-config";
    }
    if (spec == NULL || into == NULL) {
        msgf(err, err_cap, "%s: invalid argument", what);
        return PETAL_EINVAL;
    }
    size_t n = strlen(spec);
    size_t i = 0;
    for (;;) {
        while (i < n && is_space(spec[i])) {
            i++;
        }
        if (i == n) {
            break;
        }
        size_t ks = i;
        while (i < n && spec[i] != '=' && !is_space(spec[i])) {
            i++;
        }
        size_t klen = i - ks;
        if (i == n || spec[i] != '=') {
            msgf(err, err_cap, "%s: expected key=value, got '%.*s'", what, tok_shown(klen),
                 spec + ks);
            rc = PETAL_ECONFIG;
            goto done;
        }
        if (klen == 0) {
            size_t e = i;
            while (e < n && !is_space(spec[e])) {
                e++;
            }
            msgf(err, err_cap, "%s: empty key in '%.*s'", what, tok_shown(e - ks), spec + ks);
            rc = PETAL_ECONFIG;
            goto done;
        }
        if (memchr(spec + ks, '"', klen) != NULL || memchr(spec + ks, '\'', klen) != NULL) {
            msgf(err, err_cap, "%s: quotes are not allowed in key '%.*s'", what, tok_shown(klen),
                 spec + ks);
            rc = PETAL_ECONFIG;
            goto done;
        }
        i++; /* '=' */

        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            override_t *nl = realloc(list, ncap * sizeof(*nl));
            if (nl == NULL) {
                goto nomem;
            }
            list = nl;
            cap = ncap;
        }
        override_t *o = &list[count];
        memset(o, 0, sizeof(*o));
        o->key = strndup(spec + ks, klen);
        if (o->key == NULL) {
            goto nomem;
        }
        count++;

        size_t vs = i;
        int quoted = 0;
        if (i == n || is_space(spec[i])) {
            msgf(err, err_cap, "%s: missing value for '%s' (write %s='' for an empty string)", what,
                 o->key, o->key);
            rc = PETAL_ECONFIG;
            goto done;
        }
        if (spec[i] == '"' || spec[i] == '\'') {
            size_t used;
            rc = parse_string(spec + i, n - i, &used, &o->v, msg, sizeof(msg));
            if (rc != 0) {
                msgf(err, err_cap, "%s: %s (key '%s')", what, msg, o->key);
                goto done;
            }
            i += used;
            quoted = 1;
            if (i < n && !is_space(spec[i])) {
                msgf(err, err_cap, "%s: unexpected text after the quoted value of '%s'", what,
                     o->key);
                rc = PETAL_ECONFIG;
                goto done;
            }
        } else {
            while (i < n && !is_space(spec[i])) {
                i++;
            }
            int numeric;
            if (parse_bare(spec + vs, i - vs, &o->v, &numeric, msg, sizeof(msg)) != 0) {
                o->v.type = PETAL_VALUE_STRING; /* an unquoted word is a string */
                o->v.str = strndup(spec + vs, i - vs);
                o->v.len = i - vs;
                if (o->v.str == NULL) {
                    goto nomem;
                }
                if (!utf8_valid((const unsigned char *)o->v.str, o->v.len)) {
                    msgf(err, err_cap, "%s: the value of '%s' is not valid UTF-8", what, o->key);
                    rc = PETAL_ECONFIG;
                    goto done;
                }
            }
        }

        petal_value_t old;
        if (petal_configrecord_get(into, o->key, &old) == 0) {
            rc = coerce(what, o->key, &old, &o->v, quoted, spec + vs, i - vs, err, err_cap);
            if (rc != 0) {
                goto done;
            }
            if (old.type == PETAL_VALUE_UINT64) {
                o->v.type = PETAL_VALUE_UINT64;
            }
        }
    }

    /* Everything parsed and checked: apply. */
    for (size_t k = 0; k < count; k++) {
        petal_value_t pv;
        if (list[k].v.type == PETAL_VALUE_UINT64) {
            pv = petal_value_u64((uint64_t)list[k].v.i64);
        } else {
            pv = tval_value(&list[k].v);
        }
        rc = petal_configrecord_set(into, list[k].key, &pv);
        if (rc != 0) {
            msgf(err, err_cap, "%s: cannot set '%s': %s", what, list[k].key, petal_strerror(rc));
            goto done;
        }
    }
    rc = 0;
    goto done;

nomem:
    msgf(err, err_cap, "%s: out of memory", what);
    rc = PETAL_ENOMEM;
done:
    for (size_t k = 0; k < count; k++) {
        free(list[k].key);
        tval_clear(&list[k].v);
    }
    free(list);
    return rc;
}
