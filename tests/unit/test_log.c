/* test_log.c - log lines and levels, error strings and names, petal_alloc. */
#include <check.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "runtime/error.h"
#include "runtime/log.h"

/* ---- Capturing stderr into a temporary file -------------------------------------------------- */

typedef struct capture {
    int saved_fd;
    FILE *file;
} capture_t;

static void
capture_begin(capture_t *c)
{
    fflush(stderr);
    c->file = tmpfile();
    ck_assert_ptr_nonnull(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved_fd, 0);
    ck_assert_int_ge(dup2(fileno(c->file), STDERR_FILENO), 0);
}

/* Returns the captured text (caller frees). */
static char *
capture_end(capture_t *c)
{
    long n;
    char *text;

    fflush(stderr);
    ck_assert_int_ge(dup2(c->saved_fd, STDERR_FILENO), 0);
    close(c->saved_fd);
    n = ftell(c->file);
    ck_assert_int_ge(n, 0);
    text = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    rewind(c->file);
    ck_assert_uint_eq(fread(text, 1, (size_t)n, c->file), (size_t)n);
    fclose(c->file);
    return text;
}

static int
count_lines(const char *text)
{
    int n = 0;

    for (const char *p = text; *p != '\0'; p++) {
        n += *p == '\n';
    }
    return n;
}

#define LINE_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

static void
assert_matches(const char *line, const char *pattern)
{
    regex_t re;

    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
    ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0, "\"%s\" does not match /%s/", line, pattern);
    regfree(&re);
}

/* ---- Logging --------------------------------------------------------------------------------- */

START_TEST(test_parse_level)
{
    int level = -1;

    ck_assert_int_eq(pt_log_parse_level("error", &level), 0);
    ck_assert_int_eq(level, PETAL_LOG_ERROR);
    ck_assert_int_eq(pt_log_parse_level("WARN", &level), 0);
    ck_assert_int_eq(level, PETAL_LOG_WARN);
    ck_assert_int_eq(pt_log_parse_level("info", &level), 0);
    ck_assert_int_eq(level, PETAL_LOG_INFO);
    ck_assert_int_eq(pt_log_parse_level("debug", &level), 0);
    ck_assert_int_eq(level, PETAL_LOG_DEBUG);
    level = 42;
    ck_assert_int_eq(pt_log_parse_level("verbose", &level), PETAL_EINVAL);
    ck_assert_int_eq(pt_log_parse_level("", &level), PETAL_EINVAL);
    ck_assert_int_eq(pt_log_parse_level(NULL, &level), PETAL_EINVAL);
    ck_assert_int_eq(level, 42);
}
END_TEST

START_TEST(test_level_filtering_and_format)
{
    capture_t c;
    char *text;
    char *second;

    pt_log_set_level(PETAL_LOG_WARN);
    ck_assert_int_eq(pt_log_level(), PETAL_LOG_WARN);
    pt_log_set_name("tester");
    capture_begin(&c);
    PT_INFO("hidden info %d", 1);
    PT_DEBUG("hidden debug %d", 2);
    PT_WARN("shown warning %d", 42);
    petal_log(PETAL_LOG_ERROR, "shown error from %s", "plugin");
    text = capture_end(&c);
    ck_assert_ptr_null(strstr(text, "hidden"));
    ck_assert_int_eq(count_lines(text), 2);
    assert_matches(text, LINE_RE "WARN  \\[tester\\] shown warning 42$");
    second = strchr(text, '\n') + 1;
    assert_matches(second, LINE_RE "ERROR \\[tester\\] shown error from plugin$");
    free(text);

    pt_log_set_level(PETAL_LOG_DEBUG);
    pt_log_set_name(NULL);
    capture_begin(&c);
    PT_DEBUG("now visible");
    text = capture_end(&c);
    assert_matches(text, LINE_RE "DEBUG \\[-\\] now visible$");
    free(text);
}
END_TEST

/* The environment is read once, at first use (each test runs in its own process). */
START_TEST(test_env_level_read_once)
{
    capture_t c;
    char *text;
    const char *fork_mode = getenv("CK_FORK");

    if (fork_mode != NULL && strcmp(fork_mode, "no") == 0) {
        return; /* needs a fresh process: the level may have been read already */
    }
    setenv("PETAL_LOG_LEVEL", "error", 1);
    ck_assert_int_eq(pt_log_level(), PETAL_LOG_ERROR);
    setenv("PETAL_LOG_LEVEL", "debug", 1);
    ck_assert_int_eq(pt_log_level(), PETAL_LOG_ERROR);
    capture_begin(&c);
    PT_WARN("filtered");
    PT_ERROR("kept");
    text = capture_end(&c);
    ck_assert_int_eq(count_lines(text), 1);
    ck_assert_ptr_nonnull(strstr(text, "kept"));
    free(text);
    unsetenv("PETAL_LOG_LEVEL");
}
END_TEST

START_TEST(test_long_line_truncated)
{
    capture_t c;
    char *big = malloc(20000);
    char *text;
    size_t len;

    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    pt_log_set_level(PETAL_LOG_INFO);
    capture_begin(&c);
    PT_INFO("%s", big);
    text = capture_end(&c);
    len = strlen(text);
    ck_assert_int_eq(count_lines(text), 1);
    ck_assert_uint_le(len, 4096);
    ck_assert_str_eq(text + len - 4, "...\n");
    free(text);
    free(big);
}
END_TEST

#define LT_THREADS 4
#define LT_LINES 500

static void
log_thread(void *arg)
{
    static const char *const names[LT_THREADS] = {"t0", "t1", "t2", "t3"};
    int id = (int)(intptr_t)arg;

    pt_log_set_name(names[id]);
    for (int i = 0; i < LT_LINES; i++) {
        PT_INFO("thread %d line %d %s", id, i, "payload-payload-payload-payload-payload");
    }
}

START_TEST(test_threads_do_not_interleave)
{
    uv_thread_t th[LT_THREADS];
    capture_t c;
    char *text;
    char *line;
    char *save = NULL;
    int lines = 0;

    pt_log_set_level(PETAL_LOG_INFO);
    capture_begin(&c);
    for (int i = 0; i < LT_THREADS; i++) {
        ck_assert_int_eq(uv_thread_create(&th[i], log_thread, (void *)(intptr_t)i), 0);
    }
    for (int i = 0; i < LT_THREADS; i++) {
        uv_thread_join(&th[i]);
    }
    text = capture_end(&c);
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        assert_matches(line, LINE_RE "INFO  \\[t([0-3])\\] thread [0-3] line [0-9]+ "
                                     "payload-payload-payload-payload-payload$");
        lines++;
    }
    ck_assert_int_eq(lines, LT_THREADS * LT_LINES);
    free(text);
}
END_TEST

/* ---- Errors ---------------------------------------------------------------------------------- */

typedef struct expected_err {
    int code;
    const char *name;
    const char *text;
} expected_err_t;

static const expected_err_t expected[] = {
#define EXPECTED_(name, value, text) {value, #name, text},
    PETAL_ERRORS(EXPECTED_)
#undef EXPECTED_
};

START_TEST(test_strerror_table)
{
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const expected_err_t *e = &expected[i];

        ck_assert_str_eq(petal_strerror(e->code), e->text);
        ck_assert_str_eq(pt_error_name(e->code), e->name);
        ck_assert_int_eq(pt_error_is_reply_code(e->code), strncmp(e->name, "PETAL_E_", 8) == 0);
        /* Petal's codes never collide with libuv's. */
        ck_assert_int_lt(e->code, -4000);
    }
    ck_assert(pt_error_is_reply_code(PETAL_E_NODE_UNAVAILABLE));
    ck_assert(!pt_error_is_reply_code(PETAL_EPROTO));
    ck_assert(!pt_error_is_reply_code(UV_ECONNREFUSED));
    ck_assert(!pt_error_is_reply_code(0));
}
END_TEST

START_TEST(test_strerror_uv_and_unknown)
{
    ck_assert_str_eq(petal_strerror(UV_ECONNREFUSED), uv_strerror(UV_ECONNREFUSED));
    ck_assert_str_eq(petal_strerror(UV_ECONNREFUSED), "connection refused");
    ck_assert_str_eq(pt_error_name(UV_EADDRINUSE), "EADDRINUSE");
    ck_assert_str_eq(petal_strerror(0), "success");
    ck_assert_str_eq(petal_strerror(-12345), "unknown error -12345");
    ck_assert_str_eq(petal_strerror(-4099), "unknown error -4099");
    ck_assert_str_eq(pt_error_name(-12345), "UNKNOWN");
    ck_assert_ptr_nonnull(petal_strerror(7));
}
END_TEST

/* ---- Memory ---------------------------------------------------------------------------------- */

START_TEST(test_alloc)
{
    unsigned char *p = petal_alloc(1000);
    void *z = petal_alloc(0);

    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_eq(p[i], 0);
    }
    ck_assert_ptr_nonnull(z);
    ck_assert_uint_eq((uintptr_t)z % 64, 0);
    ck_assert_ptr_null(petal_alloc(UINT64_MAX));
    petal_free(p);
    petal_free(z);
    petal_free(NULL);
}
END_TEST

static Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tl = tcase_create("log");
    TCase *te = tcase_create("errors");
    TCase *tm = tcase_create("alloc");

    tcase_add_test(tl, test_parse_level);
    tcase_add_test(tl, test_level_filtering_and_format);
    tcase_add_test(tl, test_env_level_read_once);
    tcase_add_test(tl, test_long_line_truncated);
    tcase_add_test(tl, test_threads_do_not_interleave);
    tcase_add_test(te, test_strerror_table);
    tcase_add_test(te, test_strerror_uv_and_unknown);
    tcase_add_test(tm, test_alloc);
    suite_add_tcase(s, tl);
    suite_add_tcase(s, te);
    suite_add_tcase(s, tm);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(log_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
