/* cmd_new.c - `petal new NAME`: writes a small app project that builds against installed Petal. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* Files of the new project; "@NAME@" is replaced by the project's name. */
static const char *const cmake_template[] = {
    "# CMakeLists.txt - builds the @NAME@ app against an installed Petal.\n",
    "cmake_minimum_required(VERSION 3.25)\n",
    "project(@NAME@ C)\n",
    "find_package(Petal REQUIRED)\n",
    "\n",
    "# Plugins link nothing of Petal's: Petal::plugin gives the header and -fvisibility=hidden.\n",
    "add_library(client MODULE client.c)\n",
    "target_link_libraries(client PRIVATE Petal::plugin m)\n",
    "set_target_properties(client PROPERTIES PREFIX \"\" LIBRARY_OUTPUT_DIRECTORY ",
    "${CMAKE_BINARY_DIR}/app)\n",
    "configure_file(petal.toml ${CMAKE_BINARY_DIR}/app/petal.toml COPYONLY)\n",
    "@SERVER_CMAKE@",
    NULL,
};

static const char *const toml_template[] = {
    "# petal.toml - the @NAME@ app: `petal sim build/app` runs it.\n",
    "[app]\n",
    "name = \"@NAME@\"\n",
    "version = \"0.1.0\"\n",
    "client = \"client.so\"\n",
    "@SERVER@",
    "\n",
    "[app.config]\n",
    "strategy = \"fedavg\"\n",
    "num-server-rounds = 3\n",
    "fraction-train = 1.0\n",
    "fraction-evaluate = 1.0\n",
    "min-available-nodes = 2\n",
    "min-train-nodes = 2\n",
    "min-evaluate-nodes = 2\n",
    "lr = 0.1\n",
    "local-steps = 20\n",
    NULL,
};

static const char *const client_template[] = {
    "/* client.c - the @NAME@ ClientApp: linear regression on each node's synthetic data. */\n",
    "#include <math.h>\n",
    "#include <string.h>\n",
    "\n",
    "#include <petal/plugin.h>\n",
    "\n",
    "PETAL_PLUGIN_INIT;\n",
    "\n",
    "#define DIM 4\n",
    "#define SAMPLES 64\n",
    "\n",
    "/* Each node's data: y = <w_true, x> + 0.5, x drawn from a generator seeded by the node. */\n",
    "static const float w_true[DIM] = {1.0f, -2.0f, 0.5f, 3.0f};\n",
    "\n",
    "static float\n",
    "next_uniform(uint64_t *s)\n",
    "{\n",
    "    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;\n",
    "    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;\n",
    "}\n",
    "\n",
    "static void\n",
    "make_data(int64_t partition, float x[SAMPLES][DIM], float y[SAMPLES])\n",
    "{\n",
    "    uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(partition + 1);\n",
    "    for (int i = 0; i < SAMPLES; i++) {\n",
    "        y[i] = 0.5f;\n",
    "        for (int j = 0; j < DIM; j++) {\n",
    "            x[i][j] = next_uniform(&s);\n",
    "            y[i] += w_true[j] * x[i][j];\n",
    "        }\n",
    "    }\n",
    "}\n",
    "\n",
    "static int64_t\n",
    "config_int(const petal_configrecord_t *c, const char *key, int64_t dflt)\n",
    "{\n",
    "    petal_value_t v;\n",
    "    int64_t x;\n",
    "    return c && petal_configrecord_get(c, key, &v) == 0 && petal_value_as_i64(&v, &x) == 0 ",
    "? x : dflt;\n",
    "}\n",
    "\n",
    "static double\n",
    "config_f64(const petal_configrecord_t *c, const char *key, double dflt)\n",
    "{\n",
    "    petal_value_t v;\n",
    "    double x;\n",
    "    return c && petal_configrecord_get(c, key, &v) == 0 && petal_value_as_f64(&v, &x) == 0 ",
    "? x : dflt;\n",
    "}\n",
    "\n",
    "/* Mean squared error of (w, b) on the node's data; with grad != NULL also its gradient. */\n",
    "static double\n",
    "mse(const float *wb, float x[SAMPLES][DIM], const float *y, float *grad)\n",
    "{\n",
    "    double loss = 0;\n",
    "    if (grad) {\n",
    "        memset(grad, 0, sizeof(float) * (DIM + 1));\n",
    "    }\n",
    "    for (int i = 0; i < SAMPLES; i++) {\n",
    "        float e = wb[DIM] - y[i];\n",
    "        for (int j = 0; j < DIM; j++) {\n",
    "            e += wb[j] * x[i][j];\n",
    "        }\n",
    "        loss += (double)e * e / SAMPLES;\n",
    "        if (grad) {\n",
    "            for (int j = 0; j < DIM; j++) {\n",
    "                grad[j] += 2.0f * e * x[i][j] / SAMPLES;\n",
    "            }\n",
    "            grad[DIM] += 2.0f * e / SAMPLES;\n",
    "        }\n",
    "    }\n",
    "    return loss;\n",
    "}\n",
    "\n",
    "/* Reads the model from msg into wb; 0 or an error explained in the context. */\n",
    "static int32_t\n",
    "read_model(petal_context_t *ctx, const petal_message_t *msg, float *wb)\n",
    "{\n",
    "    const petal_arrayrecord_t *ar =\n",
    "        petal_recorddict_arrays(petal_message_content(msg), \"arrays\");\n",
    "    const petal_array_t *a = ar ? petal_arrayrecord_get(ar, \"wb\") : NULL;\n",
    "    if (a == NULL || petal_array_dtype(a) != PETAL_DTYPE_FLOAT32 ||\n",
    "        petal_array_numel(a) != DIM + 1) {\n",
    "        petal_context_set_error(ctx, \"expected a float32 array 'wb' of %d values\", DIM + ",
    "1);\n",
    "        return PETAL_EINVAL;\n",
    "    }\n",
    "    memcpy(wb, petal_array_data(a), sizeof(float) * (DIM + 1));\n",
    "    return 0;\n",
    "}\n",
    "\n",
    "static int32_t\n",
    "write_model(petal_recorddict_t *reply, const float *wb)\n",
    "{\n",
    "    uint64_t shape[1] = {DIM + 1};\n",
    "    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(reply, \"arrays\");\n",
    "    petal_array_t *a = ar ? petal_arrayrecord_add(ar, \"wb\", PETAL_DTYPE_FLOAT32, 1, shape) ",
    ": NULL;\n",
    "    if (a == NULL) {\n",
    "        return PETAL_ENOMEM;\n",
    "    }\n",
    "    memcpy(petal_array_data_mut(a), wb, sizeof(float) * (DIM + 1));\n",
    "    return 0;\n",
    "}\n",
    "\n",
    "static int32_t\n",
    "train(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t ",
    "*reply)\n",
    "{\n",
    "    (void)app;\n",
    "    float wb[DIM + 1], grad[DIM + 1], x[SAMPLES][DIM], y[SAMPLES];\n",
    "    int32_t rc = read_model(ctx, msg, wb);\n",
    "    if (rc != 0) {\n",
    "        return rc;\n",
    "    }\n",
    "    const petal_configrecord_t *run = petal_context_run_config(ctx);\n",
    "    make_data(config_int(petal_context_node_config(ctx), \"partition-id\", 0), x, y);\n",
    "    float lr = (float)config_f64(run, \"lr\", 0.1);\n",
    "    int64_t steps = config_int(run, \"local-steps\", 20);\n",
    "    double loss = 0;\n",
    "    for (int64_t s = 0; s < steps; s++) {\n",
    "        loss = mse(wb, x, y, grad);\n",
    "        for (int j = 0; j <= DIM; j++) {\n",
    "            wb[j] -= lr * grad[j];\n",
    "        }\n",
    "    }\n",
    "    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, \"metrics\");\n",
    "    petal_value_t v = petal_value_f64(loss);\n",
    "    petal_metricrecord_set(m, \"train-loss\", &v);\n",
    "    v = petal_value_i64(SAMPLES);\n",
    "    petal_metricrecord_set(m, \"num-examples\", &v);\n",
    "    return write_model(reply, wb);\n",
    "}\n",
    "\n",
    "static int32_t\n",
    "evaluate(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t ",
    "*reply)\n",
    "{\n",
    "    (void)app;\n",
    "    float wb[DIM + 1], x[SAMPLES][DIM], y[SAMPLES];\n",
    "    int32_t rc = read_model(ctx, msg, wb);\n",
    "    if (rc != 0) {\n",
    "        return rc;\n",
    "    }\n",
    "    make_data(config_int(petal_context_node_config(ctx), \"partition-id\", 0), x, y);\n",
    "    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, \"metrics\");\n",
    "    petal_value_t v = petal_value_f64(mse(wb, x, y, NULL));\n",
    "    petal_metricrecord_set(m, \"eval-loss\", &v);\n",
    "    v = petal_value_i64(SAMPLES);\n",
    "    petal_metricrecord_set(m, \"num-examples\", &v);\n",
    "    return 0;\n",
    "}\n",
    "\n",
    "/* The default server asks one node for the initial model with query.init-arrays. */\n",
    "static int32_t\n",
    "query(void *app, petal_context_t *ctx, const char *action, const petal_message_t *msg,\n",
    "      petal_recorddict_t *reply)\n",
    "{\n",
    "    (void)app;\n",
    "    (void)msg;\n",
    "    if (strcmp(action, \"init-arrays\") != 0) {\n",
    "        petal_context_set_error(ctx, \"unknown query '%s'\", action);\n",
    "        return PETAL_EINVAL;\n",
    "    }\n",
    "    float wb[DIM + 1] = {0};\n",
    "    return write_model(reply, wb);\n",
    "}\n",
    "\n",
    "static const petal_client_ops_t ops = {\n",
    "    .struct_size = sizeof(petal_client_ops_t),\n",
    "    .abi_version = PETAL_ABI_VERSION,\n",
    "    .train = train,\n",
    "    .evaluate = evaluate,\n",
    "    .query = query,\n",
    "};\n",
    "\n",
    "PETAL_PLUGIN_EXPORT int32_t\n",
    "petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)\n",
    "{\n",
    "    PETAL_PLUGIN_ENTRY_BEGIN(host);\n",
    "    info->abi_version = PETAL_ABI_VERSION;\n",
    "    info->kind = PETAL_PLUGIN_CLIENT;\n",
    "    info->name = \"@NAME@\";\n",
    "    info->version = \"0.1.0\";\n",
    "    info->client = &ops;\n",
    "    return 0;\n",
    "}\n",
    NULL,
};

static const char *const server_template[] = {
    "/* server.c - the @NAME@ ServerApp: FedAvg written out over the Grid API. */\n",
    "#include <string.h>\n",
    "#include <time.h>\n",
    "\n",
    "#include <petal/plugin.h>\n",
    "\n",
    "/* PETAL_PLUGIN_INIT is in client.c's plugin; this .so needs its own. */\n",
    "PETAL_PLUGIN_INIT;\n",
    "\n",
    "#define N (4 + 1) /* the model: 4 weights and a bias, as in client.c */\n",
    "#define MAX_NODES 1024\n",
    "\n",
    "/* What the replies of one phase add up to. */\n",
    "typedef struct fold {\n",
    "    double sum[N];\n",
    "    double weight, loss;\n",
    "    int64_t replies, failures;\n",
    "} fold_t;\n",
    "\n",
    "static int32_t\n",
    "fold_reply(void *ctx, const petal_message_t *reply)\n",
    "{\n",
    "    fold_t *f = ctx;\n",
    "    const petal_recorddict_t *c = petal_message_content(reply);\n",
    "    const petal_metricrecord_t *m = c ? petal_recorddict_metrics(c, \"metrics\") : NULL;\n",
    "    petal_value_t v;\n",
    "    double n = 0, loss = 0;\n",
    "    if (m == NULL || petal_metricrecord_get(m, \"num-examples\", &v) != 0 ||\n",
    "        petal_value_as_f64(&v, &n) != 0 || n <= 0) {\n",
    "        f->failures++; /* an error reply, or one without num-examples */\n",
    "        return 0;\n",
    "    }\n",
    "    if (petal_metricrecord_get(m, \"train-loss\", &v) == 0 ||\n",
    "        petal_metricrecord_get(m, \"eval-loss\", &v) == 0) {\n",
    "        petal_value_as_f64(&v, &loss);\n",
    "    }\n",
    "    const petal_arrayrecord_t *ar = petal_recorddict_arrays(c, \"arrays\");\n",
    "    const petal_array_t *a = ar ? petal_arrayrecord_get(ar, \"wb\") : NULL;\n",
    "    if (a != NULL && petal_array_numel(a) == N) {\n",
    "        const float *x = petal_array_data(a);\n",
    "        for (int i = 0; i < N; i++) {\n",
    "            f->sum[i] += n * x[i];\n",
    "        }\n",
    "    }\n",
    "    f->weight += n;\n",
    "    f->loss += n * loss;\n",
    "    f->replies++;\n",
    "    return 0;\n",
    "}\n",
    "\n",
    "static petal_message_t *\n",
    "instruction(const char *type, uint64_t node, const float *wb, int64_t round)\n",
    "{\n",
    "    petal_recorddict_t *rd = petal_recorddict_alloc();\n",
    "    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(rd, \"arrays\");\n",
    "    uint64_t shape[1] = {N};\n",
    "    petal_array_t *a = petal_arrayrecord_add(ar, \"wb\", PETAL_DTYPE_FLOAT32, 1, shape);\n",
    "    memcpy(petal_array_data_mut(a), wb, sizeof(float) * N);\n",
    "    petal_configrecord_t *cfg = petal_recorddict_add_config(rd, \"config\");\n",
    "    petal_value_t v = petal_value_i64(round);\n",
    "    petal_configrecord_set(cfg, \"server-round\", &v);\n",
    "    return petal_message_alloc(rd, type, node, \"\", 0);\n",
    "}\n",
    "\n",
    "/* Sends `type` with the model to every node; returns the fold of their replies. */\n",
    "static fold_t\n",
    "phase(petal_grid_t *grid, const char *type, const float *wb, int64_t round)\n",
    "{\n",
    "    fold_t f;\n",
    "    memset(&f, 0, sizeof(f));\n",
    "    uint64_t ids[MAX_NODES];\n",
    "    int64_t n = petal_grid_node_ids(grid, ids, MAX_NODES);\n",
    "    petal_message_t *msgs[MAX_NODES];\n",
    "    for (int64_t i = 0; i < n && i < MAX_NODES; i++) {\n",
    "        msgs[i] = instruction(type, ids[i], wb, round);\n",
    "    }\n",
    "    petal_grid_send_and_stream(grid, msgs, n < MAX_NODES ? (uint64_t)n : MAX_NODES, 60, "
    "fold_reply,\n",
    "                               &f);\n",
    "    return f;\n",
    "}\n",
    "\n",
    "static void\n",
    "record(petal_grid_t *grid, int64_t round, const char *phase_name, const char *loss_key,\n",
    "       const fold_t *f)\n",
    "{\n",
    "    petal_recorddict_t *rd = petal_recorddict_alloc();\n",
    "    petal_metricrecord_t *m = petal_recorddict_add_metrics(rd, \"metrics\");\n",
    "    petal_value_t v = petal_value_f64(f->weight > 0 ? f->loss / f->weight : 0);\n",
    "    petal_metricrecord_set(m, loss_key, &v);\n",
    "    v = petal_value_i64(f->replies);\n",
    "    petal_metricrecord_set(m, \"num-replies\", &v);\n",
    "    v = petal_value_i64(f->failures);\n",
    "    petal_metricrecord_set(m, \"num-failures\", &v);\n",
    "    petal_grid_record_metrics(grid, (uint32_t)round, phase_name, m);\n",
    "    petal_recorddict_free(rd);\n",
    "}\n",
    "\n",
    "static int32_t\n",
    "server_main(petal_grid_t *grid, petal_context_t *ctx)\n",
    "{\n",
    "    petal_value_t v;\n",
    "    int64_t rounds = 3;\n",
    "    if (petal_configrecord_get(petal_context_run_config(ctx), \"num-server-rounds\", &v) == "
    "0) {\n",
    "        petal_value_as_i64(&v, &rounds);\n",
    "    }\n",
    "    /* Wait (up to a minute) for two nodes. */\n",
    "    for (int i = 0; i < 600 && petal_grid_node_ids(grid, NULL, 0) < 2; i++) {\n",
    "        struct timespec ts = {0, 100 * 1000 * 1000};\n",
    "        nanosleep(&ts, NULL);\n",
    "    }\n",
    "    float wb[N] = {0};\n",
    "    for (int64_t r = 1; r <= rounds; r++) {\n",
    "        fold_t t = phase(grid, \"train\", wb, r);\n",
    "        if (t.weight <= 0) {\n",
    "            petal_context_set_error(ctx, \"round %lld: no train reply\", (long long)r);\n",
    "            return PETAL_E_SERVER_APP_RAISED_EXCEPTION;\n",
    "        }\n",
    "        for (int i = 0; i < N; i++) {\n",
    "            wb[i] = (float)(t.sum[i] / t.weight); /* FedAvg: weighted by num-examples */\n",
    "        }\n",
    "        record(grid, r, \"train\", \"train-loss\", &t);\n",
    "        fold_t e = phase(grid, \"evaluate\", wb, r);\n",
    "        record(grid, r, \"evaluate\", \"eval-loss\", &e);\n",
    "    }\n",
    "    petal_recorddict_t *rd = petal_recorddict_alloc();\n",
    "    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(rd, \"arrays\");\n",
    "    uint64_t shape[1] = {N};\n",
    "    petal_array_t *a = petal_arrayrecord_add(ar, \"wb\", PETAL_DTYPE_FLOAT32, 1, shape);\n",
    "    memcpy(petal_array_data_mut(a), wb, sizeof(wb));\n",
    "    petal_grid_set_final_arrays(grid, ar);\n",
    "    petal_recorddict_free(rd);\n",
    "    return 0;\n",
    "}\n",
    "\n",
    "static const petal_server_ops_t ops = {\n",
    "    .struct_size = sizeof(petal_server_ops_t),\n",
    "    .abi_version = PETAL_ABI_VERSION,\n",
    "    .main = server_main,\n",
    "};\n",
    "\n",
    "PETAL_PLUGIN_EXPORT int32_t\n",
    "petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)\n",
    "{\n",
    "    PETAL_PLUGIN_ENTRY_BEGIN(host);\n",
    "    info->abi_version = PETAL_ABI_VERSION;\n",
    "    info->kind = PETAL_PLUGIN_SERVER;\n",
    "    info->name = \"@NAME@-server\";\n",
    "    info->version = \"0.1.0\";\n",
    "    info->server = &ops;\n",
    "    return 0;\n",
    "}\n",
    NULL,
};

static const char *const readme_template[] = {
    "# @NAME@\n\n",
    "A Petal app: a ClientApp plugin (`client.c`) and its manifest (`petal.toml`). The built-in\n",
    "default server runs FedAvg with the `[app.config]` keys.\n\n",
    "    cmake -S . -B build -DCMAKE_PREFIX_PATH=/usr/local   # where Petal is installed\n",
    "    cmake --build build\n",
    "    petal sim build/app --num-supernodes 4\n\n",
    "Override any config key: `petal sim build/app --run-config \"lr=0.05 ",
    "num-server-rounds=5\"`.\n",
    NULL,
};

static int with_server; /* petal new --server */

static const char server_toml_line[] =
    "server = \"server.so\"   # main(grid, context): FedAvg by hand\n";
static const char server_cmake[] =
    "\n# The optional ServerApp: FedAvg written out over the Grid (without it the default runs).\n"
    "add_library(server MODULE server.c)\n"
    "target_link_libraries(server PRIVATE Petal::plugin)\n"
    "set_target_properties(server PROPERTIES PREFIX \"\" LIBRARY_OUTPUT_DIRECTORY "
    "${CMAKE_BINARY_DIR}/app)\n";

static int
write_file(const char *dir, const char *file, const char *const *template, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "wx");
    if (f == NULL) {
        fprintf(stderr, "petal new: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; template[i] != NULL; i++) {
        if (strcmp(template[i], "@SERVER@") == 0 || strcmp(template[i], "@SERVER_CMAKE@") == 0) {
            if (with_server) {
                fputs(strcmp(template[i], "@SERVER@") == 0 ? server_toml_line : server_cmake, f);
            }
            continue;
        }
        for (const char *p = template[i]; *p != '\0';) {
            const char *at = strstr(p, "@NAME@");
            size_t n = at ? (size_t)(at - p) : strlen(p);
            fwrite(p, 1, n, f);
            if (at == NULL) {
                break;
            }
            fputs(name, f);
            p = at + 6;
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "petal new: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int
petal_cmd_new(int argc, char **argv)
{
    const char *usage = "usage: petal new NAME [--server]\n\nWrites NAME/ with CMakeLists.txt, "
                        "client.c, petal.toml and README.md: a ClientApp\nthat builds against an "
                        "installed Petal and runs with `petal sim`. --server adds\nserver.c, a "
                        "ServerApp plugin that runs FedAvg over the Grid API by hand.\n";
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return PETAL_EXIT_OK;
        } else if (strcmp(argv[i], "--server") == 0) {
            with_server = 1;
        } else if (argv[i][0] != '-' && path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, "petal new: unexpected argument '%s'\n\n%s", argv[i], usage);
            return PETAL_EXIT_USAGE;
        }
    }
    if (path == NULL) {
        fputs(usage, stderr);
        return PETAL_EXIT_USAGE;
    }
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (name[0] == '\0' || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-") != strlen(name)) {
        fprintf(stderr, "petal new: '%s': a name uses letters, digits, '_' and '-' only\n", name);
        return PETAL_EXIT_USAGE;
    }
    if (mkdir(path, 0755) != 0) {
        fprintf(stderr, "petal new: cannot create %s: %s\n", path, strerror(errno));
        return PETAL_EXIT_USAGE;
    }
    if (write_file(path, "CMakeLists.txt", cmake_template, name) != 0 ||
        write_file(path, "petal.toml", toml_template, name) != 0 ||
        write_file(path, "client.c", client_template, name) != 0 ||
        write_file(path, "README.md", readme_template, name) != 0 ||
        (with_server && write_file(path, "server.c", server_template, name) != 0)) {
        return PETAL_EXIT_RUN_FAILED;
    }
    printf(
        "created %s: cmake -S %s -B %s/build && cmake --build %s/build && petal sim %s/build/app\n",
        path, path, path, path, path);
    return PETAL_EXIT_OK;
}
