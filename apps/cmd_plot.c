/* cmd_plot.c - `petal plot HISTORY.json... -o FILE`: per-round metric curves (SVG or PNG). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <json-c/json.h>

#include "cli.h"

/*
 * Reads the JSON that `petal sim --history` writes ({"run_config": {...}, "rounds": [{"round":
 * 1, "train": {...}, "evaluate": {...}}, ...]}) with json-c and draws one panel per metric, every
 * history a curve in it, with cairo. A metric is "name" (looked up in the phases evaluate, train,
 * server, then any other) or "phase/name". Labels are the run config's "strategy" when the
 * histories all have different ones, else the file names. The SVG gets a <title> and a <desc>
 * that name the metrics and the curves (cairo writes text as glyph outlines, so this is what
 * makes the picture searchable and accessible).
 */

#define MAX_HISTORIES 32
#define MAX_METRICS 12
#define NAME_MAX_LEN 128

/* Figure geometry, in pixels (SVG user units). */
#define MARGIN 24.0
#define TITLE_H 40.0
#define PANEL_W 520.0  /* one or two columns */
#define PANEL_W3 430.0 /* three columns */
#define PANEL_H 360.0
#define GAP 28.0
#define PLOT_LEFT 72.0
#define PLOT_RIGHT 18.0
#define PLOT_TOP 34.0
#define PLOT_BOTTOM 50.0
#define LEGEND_ROW_H 24.0
#define LEGEND_SWATCH 30.0
#define FONT "DejaVu Sans"

static const char *const default_metrics[] = {"train-loss", "eval-loss", "eval-acc"};
static const char *const phase_order[] = {"evaluate", "train", "server"};

/* tab10: distinguishable, and kind to the common colour-vision deficiencies with the markers. */
static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

typedef struct series {
    double *x; /* rounds */
    double *y; /* NAN where a round lacks the value (a gap in the curve) */
    size_t n;
} series_t;

typedef struct history {
    const char *path;
    json_object *root;
    json_object *rounds; /* array */
    char label[NAME_MAX_LEN];
} history_t;

typedef struct metric {
    char phase[NAME_MAX_LEN]; /* "" = search the phases */
    char name[NAME_MAX_LEN];
    char shown[2 * NAME_MAX_LEN + 4]; /* the panel title */
    series_t s[MAX_HISTORIES];
} metric_t;

typedef struct plot_cli {
    const char *out;
    const char *metrics;
    const char *labels;
    const char *title;
    const char *files[MAX_HISTORIES];
    int nfiles;
} plot_cli_t;

static void
usage(FILE *out)
{
    fprintf(
        out,
        "usage: petal plot HISTORY.json [HISTORY2.json ...] -o OUT.svg|OUT.png [options]\n"
        "\n"
        "Draws per-round metrics of `petal sim --history` files, one panel per metric, the\n"
        "histories overlaid with a legend (to compare strategies, partitioners, ...).\n"
        "\n"
        "options:\n"
        "  -o, --output FILE     the picture: SVG, or PNG when FILE ends with .png\n"
        "  -m, --metric LIST     comma-separated metrics, each NAME or PHASE/NAME\n"
        "                        (default: those of train-loss, eval-loss, eval-acc that every\n"
        "                        history has)\n"
        "  -l, --labels LIST     comma-separated legend labels, one per history (default: the\n"
        "                        run config's strategy when they differ, else the file name)\n"
        "  -t, --title TEXT      the figure's title\n"
        "  -h, --help            this help\n");
}

static int
parse_args(int argc, char **argv, plot_cli_t *o)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"metric", required_argument, NULL, 'm'},
        {"labels", required_argument, NULL, 'l'}, {"title", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof(*o));
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:m:l:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            o->out = optarg;
            break;
        case 'm':
            o->metrics = optarg;
            break;
        case 'l':
            o->labels = optarg;
            break;
        case 't':
            o->title = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(PETAL_EXIT_OK);
        default:
            usage(stderr);
            return -1;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nfiles == MAX_HISTORIES) {
            fprintf(stderr, "petal plot: at most %d histories in one picture\n", MAX_HISTORIES);
            return -1;
        }
        o->files[o->nfiles++] = argv[i];
    }
    if (o->nfiles == 0) {
        fprintf(stderr, "petal plot: missing HISTORY.json (written by petal sim --history)\n");
        usage(stderr);
        return -1;
    }
    if (o->out == NULL) {
        fprintf(stderr, "petal plot: missing -o OUT.svg or -o OUT.png\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

static int
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* ---- Reading histories ------------------------------------------------------------------- */

static char *
read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "petal plot: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
        if (len == cap) {
            char *b = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (buf == NULL || bad) {
        fprintf(stderr, "petal plot: cannot read %s: %s\n", path,
                buf == NULL ? "file too large or out of memory" : "read error");
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

/* Line and column (1-based) of byte `off` of text. */
static void
line_col(const char *text, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int
load_history(history_t *h, const char *path)
{
    memset(h, 0, sizeof(*h));
    h->path = path;
    size_t len = 0;
    char *text = read_file(path, &len);
    if (text == NULL) {
        return -1;
    }
    json_tokener *tok = json_tokener_new();
    if (tok == NULL || len > INT32_MAX) {
        fprintf(stderr, "petal plot: cannot parse %s: %s\n", path,
                tok == NULL ? "out of memory" : "file too large");
        json_tokener_free(tok);
        free(text);
        return -1;
    }
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    int line, col;
    if (root == NULL) {
        if (jerr == json_tokener_continue || jerr == json_tokener_success) {
            fprintf(stderr, "petal plot: %s is not valid JSON: it ends early\n", path);
        } else {
            line_col(text, end > len ? len : end, &line, &col);
            fprintf(stderr, "petal plot: %s is not valid JSON: %s at line %d, column %d\n", path,
                    json_tokener_error_desc(jerr), line, col);
        }
        goto fail;
    }
    while (end < len &&
           (text[end] == ' ' || text[end] == '\n' || text[end] == '\r' || text[end] == '\t')) {
        end++;
    }
    if (end < len) {
        line_col(text, end, &line, &col);
        fprintf(stderr,
                "petal plot: %s is not valid JSON: unexpected text after the end at "
                "line %d, column %d\n",
                path, line, col);
        goto fail;
    }
    json_object *rounds = NULL;
    if (!json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "rounds", &rounds) ||
        !json_object_is_type(rounds, json_type_array)) {
        fprintf(stderr,
                "petal plot: %s is not a Petal history: it has no \"rounds\" array (write one "
                "with petal sim --history FILE)\n",
                path);
        goto fail;
    }
    json_tokener_free(tok);
    free(text);
    h->root = root;
    h->rounds = rounds;
    return 0;

fail:
    json_object_put(root);
    json_tokener_free(tok);
    free(text);
    return -1;
}

/* A JSON number (or null, as NAN) as *out; 0, or -1 for another type. */
static int
json_number(json_object *v, double *out)
{
    if (v == NULL || json_object_is_type(v, json_type_null)) {
        *out = NAN;
        return 0;
    }
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        return 0;
    }
    return -1;
}

/* The value of `name` in round object r: in `phase`, or the first phase that has it. */
static json_object *
round_value(json_object *r, const char *phase, const char *name)
{
    json_object *p, *v;
    if (phase[0] != '\0') {
        if (json_object_object_get_ex(r, phase, &p) && json_object_is_type(p, json_type_object) &&
            json_object_object_get_ex(p, name, &v)) {
            return v;
        }
        return NULL;
    }
    for (size_t i = 0; i < sizeof(phase_order) / sizeof(phase_order[0]); i++) {
        if (json_object_object_get_ex(r, phase_order[i], &p) &&
            json_object_is_type(p, json_type_object) && json_object_object_get_ex(p, name, &v)) {
            return v;
        }
    }
    struct json_object_iterator it = json_object_iter_begin(r);
    struct json_object_iterator e = json_object_iter_end(r);
    for (; !json_object_iter_equal(&it, &e); json_object_iter_next(&it)) {
        p = json_object_iter_peek_value(&it);
        if (json_object_is_type(p, json_type_object) && json_object_object_get_ex(p, name, &v)) {
            return v;
        }
    }
    return NULL;
}

/* How many rounds of h have a numeric `name`. */
static size_t
count_metric(const history_t *h, const char *phase, const char *name)
{
    size_t n = 0, len = json_object_array_length(h->rounds);
    for (size_t i = 0; i < len; i++) {
        json_object *r = json_object_array_get_idx(h->rounds, i);
        double x;
        json_object *v =
            json_object_is_type(r, json_type_object) ? round_value(r, phase, name) : NULL;
        if (v != NULL && json_number(v, &x) == 0) {
            n++;
        }
    }
    return n;
}

/* Lists the numeric metric names of h (phase/name) into buf, for an error message. */
static void
list_metrics(const history_t *h, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    json_object *r =
        json_object_array_length(h->rounds) > 0 ? json_object_array_get_idx(h->rounds, 0) : NULL;
    if (r == NULL || !json_object_is_type(r, json_type_object)) {
        snprintf(buf, cap, "none: it has no rounds");
        return;
    }
    struct json_object_iterator it = json_object_iter_begin(r);
    struct json_object_iterator e = json_object_iter_end(r);
    for (; !json_object_iter_equal(&it, &e); json_object_iter_next(&it)) {
        json_object *p = json_object_iter_peek_value(&it);
        if (!json_object_is_type(p, json_type_object)) {
            continue;
        }
        struct json_object_iterator mi = json_object_iter_begin(p);
        struct json_object_iterator me = json_object_iter_end(p);
        for (; !json_object_iter_equal(&mi, &me); json_object_iter_next(&mi)) {
            double x;
            if (json_number(json_object_iter_peek_value(&mi), &x) != 0 || at + 1 >= cap) {
                continue;
            }
            int n = snprintf(buf + at, cap - at, "%s%s/%s", at > 0 ? ", " : "",
                             json_object_iter_peek_name(&it), json_object_iter_peek_name(&mi));
            at = n > 0 && (size_t)n < cap - at ? at + (size_t)n : cap - 1;
        }
    }
    if (at == 0) {
        snprintf(buf, cap, "none");
    }
}

static int
extract_series(const history_t *h, const char *phase, const char *name, series_t *s)
{
    size_t len = json_object_array_length(h->rounds);
    s->x = calloc(len > 0 ? len : 1, sizeof(double));
    s->y = calloc(len > 0 ? len : 1, sizeof(double));
    s->n = 0;
    if (s->x == NULL || s->y == NULL) {
        fprintf(stderr, "petal plot: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        json_object *r = json_object_array_get_idx(h->rounds, i);
        json_object *rv;
        if (!json_object_is_type(r, json_type_object) ||
            !json_object_object_get_ex(r, "round", &rv) ||
            !json_object_is_type(rv, json_type_int)) {
            fprintf(stderr, "petal plot: %s: rounds[%zu] has no integer \"round\"\n", h->path, i);
            return -1;
        }
        double y;
        json_object *v = round_value(r, phase, name);
        if (v == NULL || json_number(v, &y) != 0) {
            y = NAN;
        }
        s->x[s->n] = (double)json_object_get_int64(rv);
        s->y[s->n] = y;
        s->n++;
    }
    return 0;
}

/* Splits a comma-separated list into at most `max` trimmed, non-empty items of < NAME_MAX_LEN. */
static int
split_list(const char *list, const char *what, char items[][NAME_MAX_LEN], int max)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        if (len == 0 || len >= NAME_MAX_LEN) {
            fprintf(stderr, "petal plot: %s '%s': %s\n", what, list,
                    len == 0 ? "an item is empty" : "an item is too long");
            return -1;
        }
        if (n == max) {
            fprintf(stderr, "petal plot: %s '%s': at most %d items\n", what, list, max);
            return -1;
        }
        memcpy(items[n], p, len);
        items[n][len] = '\0';
        n++;
        if (comma == NULL) {
            return n;
        }
        p = comma + 1;
    }
}

static void
set_metric_name(metric_t *m, const char *spec)
{
    const char *slash = strchr(spec, '/');
    if (slash != NULL) {
        snprintf(m->phase, sizeof(m->phase), "%.*s", (int)(slash - spec), spec);
        snprintf(m->name, sizeof(m->name), "%s", slash + 1);
        snprintf(m->shown, sizeof(m->shown), "%s (%s)", m->name, m->phase);
    } else {
        m->phase[0] = '\0';
        snprintf(m->name, sizeof(m->name), "%s", spec);
        snprintf(m->shown, sizeof(m->shown), "%s", spec);
    }
}

/* The metrics to draw; n of them. */
static int
choose_metrics(const plot_cli_t *o, const history_t *hs, int nh, metric_t *ms, int *n)
{
    char list[256];
    *n = 0;
    if (o->metrics != NULL) {
        char items[MAX_METRICS][NAME_MAX_LEN];
        int k = split_list(o->metrics, "--metric", items, MAX_METRICS);
        if (k < 0) {
            return -1;
        }
        for (int i = 0; i < k; i++) {
            set_metric_name(&ms[i], items[i]);
            if (ms[i].name[0] == '\0') {
                fprintf(stderr, "petal plot: --metric '%s': no metric name after the phase\n",
                        items[i]);
                return -1;
            }
            for (int j = 0; j < nh; j++) {
                if (count_metric(&hs[j], ms[i].phase, ms[i].name) == 0) {
                    list_metrics(&hs[j], list, sizeof(list));
                    fprintf(stderr,
                            "petal plot: %s has no metric \"%s\" in any round (its metrics: "
                            "%s)\n",
                            hs[j].path, items[i], list);
                    return -1;
                }
            }
        }
        *n = k;
        return 0;
    }
    for (size_t i = 0; i < sizeof(default_metrics) / sizeof(default_metrics[0]); i++) {
        int everywhere = 1;
        for (int j = 0; j < nh && everywhere; j++) {
            everywhere = count_metric(&hs[j], "", default_metrics[i]) > 0;
        }
        if (everywhere) {
            set_metric_name(&ms[*n], default_metrics[i]);
            (*n)++;
        }
    }
    if (*n == 0) {
        int j = 0;
        for (; j < nh; j++) { /* a history with none of them, if there is one */
            int any = 0;
            for (size_t i = 0; i < sizeof(default_metrics) / sizeof(default_metrics[0]); i++) {
                any |= count_metric(&hs[j], "", default_metrics[i]) > 0;
            }
            if (!any) {
                break;
            }
        }
        list_metrics(&hs[j < nh ? j : 0], list, sizeof(list));
        fprintf(stderr, "petal plot: %s %s; name the metrics with --metric (%s has: %s)\n",
                j < nh ? hs[j].path : "the histories",
                j < nh ? "has none of the metrics train-loss, eval-loss, eval-acc"
                       : "have none of train-loss, eval-loss, eval-acc in common",
                hs[j < nh ? j : 0].path, list);
        return -1;
    }
    return 0;
}

/* The file name without directories and without ".json". */
static void
file_label(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 5 && strcasecmp(base + len - 5, ".json") == 0) {
        len -= 5;
    }
    snprintf(out, cap, "%.*s", (int)len, base);
}

static int
choose_labels(const plot_cli_t *o, history_t *hs, int nh)
{
    if (o->labels != NULL) {
        char items[MAX_HISTORIES][NAME_MAX_LEN];
        int k = split_list(o->labels, "--labels", items, MAX_HISTORIES);
        if (k < 0) {
            return -1;
        }
        if (k != nh) {
            fprintf(stderr, "petal plot: --labels has %d labels for %d histories\n", k, nh);
            return -1;
        }
        for (int i = 0; i < nh; i++) {
            snprintf(hs[i].label, sizeof(hs[i].label), "%.*s", NAME_MAX_LEN - 1, items[i]);
        }
        return 0;
    }
    int by_strategy = nh > 1;
    for (int i = 0; i < nh && by_strategy; i++) {
        json_object *rc, *s;
        if (!json_object_object_get_ex(hs[i].root, "run_config", &rc) ||
            !json_object_object_get_ex(rc, "strategy", &s) ||
            !json_object_is_type(s, json_type_string)) {
            by_strategy = 0;
            break;
        }
        snprintf(hs[i].label, sizeof(hs[i].label), "%s", json_object_get_string(s));
        for (int j = 0; j < i; j++) {
            if (strcmp(hs[i].label, hs[j].label) == 0) {
                by_strategy = 0;
            }
        }
    }
    if (!by_strategy) {
        for (int i = 0; i < nh; i++) {
            file_label(hs[i].path, hs[i].label, sizeof(hs[i].label));
        }
    }
    return 0;
}

/* ---- Drawing ----------------------------------------------------------------------------- */

/* A "nice" step (1, 2, 2.5 or 5 times a power of ten) near range / target. */
static double
nice_step(double range, int target)
{
    double raw = range / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    double nice = f < 1.5 ? 1.0 : f < 2.25 ? 2.0 : f < 3.5 ? 2.5 : f < 7.5 ? 5.0 : 10.0;
    return nice * mag;
}

/* Decimals needed to print multiples of step. */
static int
step_decimals(double step)
{
    int d = 0;
    while (d < 8 && fabs(step * pow(10.0, d) - nearbyint(step * pow(10.0, d))) > 1e-6) {
        d++;
    }
    return d;
}

static void
set_font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Draws text with its anchor at (x, y): ax/ay 0 = left/top, 0.5 = centre, 1 = right/bottom. */
static void
draw_text(cairo_t *cr, const char *s, double x, double y, double ax, double ay)
{
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &te);
    cairo_font_extents(cr, &fe);
    double h = fe.ascent - fe.descent * 0.2;
    cairo_move_to(cr, x - te.x_advance * ax, y - h * ay + fe.ascent - fe.descent * 0.2);
    cairo_show_text(cr, s);
}

static void
draw_marker(cairo_t *cr, int shape, double x, double y, double r)
{
    switch (shape % 4) {
    case 0:
        cairo_arc(cr, x, y, r, 0, 2 * M_PI);
        break;
    case 1:
        cairo_rectangle(cr, x - r * 0.85, y - r * 0.85, 1.7 * r, 1.7 * r);
        break;
    case 2:
        cairo_move_to(cr, x, y - r * 1.15);
        cairo_line_to(cr, x + r * 1.05, y + r * 0.8);
        cairo_line_to(cr, x - r * 1.05, y + r * 0.8);
        cairo_close_path(cr);
        break;
    default:
        cairo_move_to(cr, x, y - r * 1.25);
        cairo_line_to(cr, x + r * 1.05, y);
        cairo_line_to(cr, x, y + r * 1.25);
        cairo_line_to(cr, x - r * 1.05, y);
        cairo_close_path(cr);
        break;
    }
}

/* Colour, dash and marker of curve i. */
static void
set_style(cairo_t *cr, int i)
{
    const double *c = palette[i % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 2.0);
    static const double dash[2] = {7.0, 4.0};
    cairo_set_dash(cr, dash, i >= 10 ? 2 : 0, 0);
}

static void
draw_panel(cairo_t *cr, const metric_t *m, int nh, double px, double py, double pw)
{
    double x0 = px + PLOT_LEFT, x1 = px + pw - PLOT_RIGHT;
    double y0 = py + PLOT_TOP, y1 = py + PANEL_H - PLOT_BOTTOM;

    /* Data ranges. */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    size_t points = 0;
    for (int i = 0; i < nh; i++) {
        for (size_t k = 0; k < m->s[i].n; k++) {
            if (!isfinite(m->s[i].y[k])) {
                continue;
            }
            xmin = fmin(xmin, m->s[i].x[k]);
            xmax = fmax(xmax, m->s[i].x[k]);
            ymin = fmin(ymin, m->s[i].y[k]);
            ymax = fmax(ymax, m->s[i].y[k]);
            points++;
        }
    }
    if (points == 0) {
        xmin = 1;
        xmax = 2;
        ymin = 0;
        ymax = 1;
    }
    if (xmax - xmin < 1) {
        xmin -= 0.5;
        xmax += 0.5;
    }
    if (ymax - ymin < 1e-12 * fmax(1.0, fabs(ymax))) {
        double pad = fabs(ymax) > 0 ? fabs(ymax) * 0.05 : 0.5;
        ymin -= pad;
        ymax += pad;
    }
    double ystep = nice_step(ymax - ymin, 5);
    double ylo = floor(ymin / ystep + 1e-9) * ystep, yhi = ceil(ymax / ystep - 1e-9) * ystep;
    double xstep = fmax(1.0, nice_step(xmax - xmin, 8));
    if (xstep > 1 && xstep < 2) {
        xstep = 2;
    }
    double xlo = xmin, xhi = xmax;
    double xpad = (xhi - xlo) * 0.03;
    xlo -= xpad;
    xhi += xpad;
#define SX(v) (x0 + ((v)-xlo) / (xhi - xlo) * (x1 - x0))
#define SY(v) (y1 - ((v)-ylo) / (yhi - ylo) * (y1 - y0))

    /* Panel title. */
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    set_font(cr, 15, 1);
    draw_text(cr, m->shown, (x0 + x1) / 2, py + 8, 0.5, 0);

    /* Plot area and grid. */
    cairo_set_source_rgb(cr, 0.975, 0.975, 0.98);
    cairo_rectangle(cr, x0, y0, x1 - x0, y1 - y0);
    cairo_fill(cr);
    set_font(cr, 12, 0);
    char buf[64];
    int yd = step_decimals(ystep);
    for (int k = 0; k <= 200; k++) {
        double v = ylo + k * ystep;
        if (v > yhi + ystep * 1e-6) {
            break;
        }
        double y = floor(SY(v)) + 0.5;
        cairo_set_source_rgb(cr, 0.86, 0.86, 0.88);
        cairo_set_line_width(cr, 1.0);
        cairo_move_to(cr, x0, y);
        cairo_line_to(cr, x1, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_move_to(cr, x0 - 5, y);
        cairo_line_to(cr, x0, y);
        cairo_stroke(cr);
        snprintf(buf, sizeof(buf), "%.*f", yd, fabs(v) < ystep * 1e-6 ? 0.0 : v);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        draw_text(cr, buf, x0 - 8, y, 1, 0.5);
    }
    double xfirst = ceil(xmin / xstep - 1e-9) * xstep;
    for (int k = 0; k <= 200; k++) {
        double v = xfirst + k * xstep;
        if (v > xmax + 1e-9) {
            break;
        }
        double x = floor(SX(v)) + 0.5;
        cairo_set_source_rgb(cr, 0.91, 0.91, 0.93);
        cairo_set_line_width(cr, 1.0);
        cairo_move_to(cr, x, y0);
        cairo_line_to(cr, x, y1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_move_to(cr, x, y1);
        cairo_line_to(cr, x, y1 + 5);
        cairo_stroke(cr);
        snprintf(buf, sizeof(buf), "%.0f", v);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        draw_text(cr, buf, x, y1 + 8, 0.5, 0);
    }
    /* Axes. */
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, floor(x0) + 0.5, floor(y0) + 0.5, floor(x1) - floor(x0),
                    floor(y1) - floor(y0));
    cairo_stroke(cr);
    set_font(cr, 13, 0);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    draw_text(cr, "round", (x0 + x1) / 2, py + PANEL_H - 4, 0.5, 1);
    cairo_save(cr);
    cairo_translate(cr, px + 14, (y0 + y1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, m->name, 0, 0, 0.5, 0.5);
    cairo_restore(cr);

    /* Curves, clipped to the plot area; markers when there are few points. */
    cairo_save(cr);
    cairo_rectangle(cr, x0, y0, x1 - x0, y1 - y0);
    cairo_clip(cr);
    for (int i = 0; i < nh; i++) {
        const series_t *s = &m->s[i];
        set_style(cr, i);
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
        int down = 0;
        for (size_t k = 0; k < s->n; k++) {
            if (!isfinite(s->y[k])) {
                down = 0;
                continue;
            }
            if (down) {
                cairo_line_to(cr, SX(s->x[k]), SY(s->y[k]));
            } else {
                cairo_move_to(cr, SX(s->x[k]), SY(s->y[k]));
                down = 1;
            }
        }
        cairo_stroke(cr);
        if (s->n <= 40) {
            cairo_set_dash(cr, NULL, 0, 0);
            for (size_t k = 0; k < s->n; k++) {
                if (isfinite(s->y[k])) {
                    draw_marker(cr, i, SX(s->x[k]), SY(s->y[k]), 3.6);
                    cairo_fill(cr);
                }
            }
        }
    }
    cairo_restore(cr);
#undef SX
#undef SY
}

/* Legend layout: entries flow left to right and wrap; returns the number of rows. */
static int
legend_layout(cairo_t *cr, const history_t *hs, int nh, double width, double *ex, int *erow)
{
    set_font(cr, 13, 0);
    double x = 0;
    int row = 0;
    for (int i = 0; i < nh; i++) {
        cairo_text_extents_t te;
        cairo_text_extents(cr, hs[i].label, &te);
        double w = LEGEND_SWATCH + 8 + te.x_advance + 26;
        if (x > 0 && x + w > width) {
            row++;
            x = 0;
        }
        ex[i] = x;
        erow[i] = row;
        x += w;
    }
    return row + 1;
}

static void
draw_legend(cairo_t *cr, const history_t *hs, int nh, double left, double top, double width,
            const double *ex, const int *erow)
{
    /* Centre each row. */
    double row_w[MAX_HISTORIES] = {0};
    set_font(cr, 13, 0);
    for (int i = 0; i < nh; i++) {
        cairo_text_extents_t te;
        cairo_text_extents(cr, hs[i].label, &te);
        row_w[erow[i]] = ex[i] + LEGEND_SWATCH + 8 + te.x_advance;
    }
    for (int i = 0; i < nh; i++) {
        double x = left + (width - row_w[erow[i]]) / 2 + ex[i];
        double y = top + erow[i] * LEGEND_ROW_H + LEGEND_ROW_H / 2;
        set_style(cr, i);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + LEGEND_SWATCH, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        draw_marker(cr, i, x + LEGEND_SWATCH / 2, y, 3.6);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        draw_text(cr, hs[i].label, x + LEGEND_SWATCH + 8, y, 0, 0.5);
    }
}

static void
default_title(const metric_t *ms, int nm, int nh, char *buf, size_t cap)
{
    size_t at = 0;
    for (int i = 0; i < nm && at < cap; i++) {
        int n = snprintf(buf + at, cap - at, "%s%s",
                         i == 0        ? ""
                         : i == nm - 1 ? " and "
                                       : ", ",
                         ms[i].name);
        at = n > 0 ? at + (size_t)n : at;
    }
    if (at < cap) {
        snprintf(buf + at, cap - at, nh > 1 ? " per round, %d runs" : " per round", nh);
    }
}

static void
draw_figure(cairo_t *cr, const char *title, const metric_t *ms, int nm, const history_t *hs, int nh,
            int cols, double width, double legend_top, const double *ex, const int *erow,
            int legend_rows)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
    double size = 18;
    cairo_text_extents_t te;
    for (;; size -= 1) { /* shrink a long title to fit (down to 10 px) */
        set_font(cr, size, 1);
        cairo_text_extents(cr, title, &te);
        if (te.x_advance <= width - 2 * MARGIN || size <= 10) {
            break;
        }
    }
    draw_text(cr, title, width / 2, MARGIN, 0.5, 0);
    draw_legend(cr, hs, nh, MARGIN, legend_top, width - 2 * MARGIN, ex, erow);
    double top = legend_top + legend_rows * LEGEND_ROW_H + 12;
    for (int i = 0; i < nm; i++) {
        double pw = cols == 3 ? PANEL_W3 : PANEL_W;
        double px = MARGIN + (i % cols) * (pw + GAP);
        double py = top + (i / cols) * (PANEL_H + GAP);
        draw_panel(cr, &ms[i], nh, px, py, pw);
    }
}

/* cairo's SVG stream goes to memory, so that <title> and <desc> can be put in before saving. */
typedef struct membuf {
    char *data;
    size_t len, cap;
    int failed;
} membuf_t;

static cairo_status_t
membuf_write(void *closure, const unsigned char *data, unsigned int length)
{
    membuf_t *b = closure;
    if (b->len + length + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + length + 1) {
            cap *= 2;
        }
        char *p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return CAIRO_STATUS_WRITE_ERROR;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, length);
    b->len += length;
    b->data[b->len] = '\0';
    return CAIRO_STATUS_SUCCESS;
}

static void
xml_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static int
write_svg(const char *path, const membuf_t *svg, const char *title, const metric_t *ms, int nm,
          const history_t *hs, int nh)
{
    const char *open = svg->data ? strstr(svg->data, "<svg") : NULL;
    const char *close = open ? strchr(open, '>') : NULL;
    if (close == NULL) {
        fprintf(stderr, "petal plot: cairo wrote no SVG\n");
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "petal plot: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t head = (size_t)(close + 1 - svg->data);
    fwrite(svg->data, 1, head, f);
    fputs("\n<title>", f);
    xml_escaped(f, title);
    fputs("</title>\n<desc>Metrics:", f);
    for (int i = 0; i < nm; i++) {
        fputs(i ? ", " : " ", f);
        xml_escaped(f, ms[i].shown);
    }
    fputs(". Legend:", f);
    for (int i = 0; i < nh; i++) {
        fputs(i ? ", " : " ", f);
        xml_escaped(f, hs[i].label);
    }
    fputs(".</desc>", f);
    fwrite(svg->data + head, 1, svg->len - head, f);
    if (ferror(f) || fclose(f) != 0) {
        fprintf(stderr, "petal plot: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int
render(const plot_cli_t *o, const metric_t *ms, int nm, const history_t *hs, int nh)
{
    int png = ends_with(o->out, ".png");
    int cols = nm <= 3 ? nm : nm == 4 ? 2 : 3;
    int rows = (nm + cols - 1) / cols;
    double width = 2 * MARGIN + cols * (cols == 3 ? PANEL_W3 : PANEL_W) + (cols - 1) * GAP;

    char title[512];
    if (o->title != NULL) {
        snprintf(title, sizeof(title), "%s", o->title);
    } else {
        default_title(ms, nm, nh, title, sizeof(title));
    }

    /* Measure the legend on a scratch surface. */
    double ex[MAX_HISTORIES];
    int erow[MAX_HISTORIES];
    cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *mcr = cairo_create(scratch);
    int legend_rows = legend_layout(mcr, hs, nh, width - 2 * MARGIN, ex, erow);
    cairo_destroy(mcr);
    cairo_surface_destroy(scratch);
    double legend_top = MARGIN + TITLE_H - 6;
    double height = legend_top + legend_rows * LEGEND_ROW_H + 12 + rows * PANEL_H +
                    (rows - 1) * GAP + MARGIN * 0.5;

    membuf_t svg = {0};
    cairo_surface_t *surface;
    if (png) {
        surface =
            cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)ceil(width), (int)ceil(height));
    } else {
        surface = cairo_svg_surface_create_for_stream(membuf_write, &svg, width, height);
        if (cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS) {
            cairo_svg_surface_set_document_unit(surface, CAIRO_SVG_UNIT_PX);
        }
    }
    cairo_t *cr = cairo_create(surface);
    draw_figure(cr, title, ms, nm, hs, nh, cols, width, legend_top, ex, erow, legend_rows);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    int rc = 0;
    if (st != CAIRO_STATUS_SUCCESS) {
        fprintf(stderr, "petal plot: drawing failed: %s\n", cairo_status_to_string(st));
        rc = -1;
    } else if (png) {
        st = cairo_surface_write_to_png(surface, o->out);
        if (st != CAIRO_STATUS_SUCCESS) {
            fprintf(stderr, "petal plot: cannot write %s: %s\n", o->out,
                    st == CAIRO_STATUS_WRITE_ERROR ? strerror(errno) : cairo_status_to_string(st));
            rc = -1;
        }
    } else {
        cairo_surface_finish(surface);
        st = cairo_surface_status(surface);
        if (st != CAIRO_STATUS_SUCCESS || svg.failed) {
            fprintf(stderr, "petal plot: cannot render the SVG: %s\n",
                    svg.failed ? "out of memory" : cairo_status_to_string(st));
            rc = -1;
        } else {
            rc = write_svg(o->out, &svg, title, ms, nm, hs, nh);
        }
    }
    cairo_surface_destroy(surface);
    free(svg.data);
    return rc;
}

int
petal_cmd_plot(int argc, char **argv)
{
    plot_cli_t o;
    if (parse_args(argc, argv, &o) != 0) {
        return PETAL_EXIT_USAGE;
    }
    if (!ends_with(o.out, ".svg") && !ends_with(o.out, ".png")) {
        fprintf(stderr, "petal plot: -o %s: the name must end with .svg or .png\n", o.out);
        return PETAL_EXIT_USAGE;
    }
    int rc = PETAL_EXIT_RUN_FAILED;
    history_t hs[MAX_HISTORIES];
    metric_t *ms = calloc(MAX_METRICS, sizeof(metric_t));
    int nh = 0, nm = 0;
    if (ms == NULL) {
        fprintf(stderr, "petal plot: out of memory\n");
        return rc;
    }
    for (; nh < o.nfiles; nh++) {
        if (load_history(&hs[nh], o.files[nh]) != 0) {
            goto done;
        }
    }
    if (choose_metrics(&o, hs, nh, ms, &nm) != 0 || choose_labels(&o, hs, nh) != 0) {
        goto done;
    }
    for (int i = 0; i < nm; i++) {
        for (int j = 0; j < nh; j++) {
            if (extract_series(&hs[j], ms[i].phase, ms[i].name, &ms[i].s[j]) != 0) {
                goto done;
            }
        }
    }
    if (render(&o, ms, nm, hs, nh) == 0) {
        printf("petal plot: wrote %s (%d metric%s, %d histor%s)\n", o.out, nm, nm == 1 ? "" : "s",
               nh, nh == 1 ? "y" : "ies");
        rc = PETAL_EXIT_OK;
    }

done:
    for (int i = 0; i < MAX_METRICS; i++) {
        for (int j = 0; j < MAX_HISTORIES; j++) {
            free(ms[i].s[j].x);
            free(ms[i].s[j].y);
        }
    }
    free(ms);
    for (int j = 0; j < nh; j++) {
        json_object_put(hs[j].root);
    }
    /* Free cairo's font caches, then fontconfig's state, so leak checkers see a clean exit. */
    cairo_debug_reset_static_data();
    FcFini();
    return rc;
}
