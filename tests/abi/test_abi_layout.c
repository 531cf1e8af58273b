/* test_abi_layout.c - freezes ABI v1: layouts, table slots, numbers that cross the boundary. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

/*
 * If a static assert here fails, a change broke plugins that are already built. ABI v1 may
 * only grow by appending: a new host slot goes after the last one (add it at the end of
 * HOST_SLOTS and bump HOST_SLOTS_V1 with a note of the minor version); new fields of a struct
 * that starts with struct_size go at its end. Anything else needs ABI v2 and a new entry
 * symbol (docs/plugin-abi.md).
 */

/* ---- numbers that are on the wire or in plugins' code ------------------------------------ */

_Static_assert(PETAL_ABI_VERSION == 1, "ABI version");
_Static_assert(sizeof(PETAL_PLUGIN_ENTRY_V1) == sizeof("petal_plugin_entry_v1"), "entry name");

#define FROZEN_ERRORS(X)                                                                           \
    X(PETAL_EPROTO, -4001)                                                                         \
    X(PETAL_EMSGSIZE, -4002)                                                                       \
    X(PETAL_EABI, -4003)                                                                           \
    X(PETAL_ENOENT, -4004)                                                                         \
    X(PETAL_EINVAL, -4005)                                                                         \
    X(PETAL_ENOMEM, -4006)                                                                         \
    X(PETAL_ECLOSED, -4007)                                                                        \
    X(PETAL_EAGAIN, -4008)                                                                         \
    X(PETAL_ETIMEDOUT, -4009)                                                                      \
    X(PETAL_EPLUGIN, -4010)                                                                        \
    X(PETAL_ECONFIG, -4011)                                                                        \
    X(PETAL_ETYPE, -4012)                                                                          \
    X(PETAL_EEXIST, -4013)                                                                         \
    X(PETAL_EVERSION, -4014)                                                                       \
    X(PETAL_EIO, -4015)                                                                            \
    X(PETAL_ESTATE, -4016)                                                                         \
    X(PETAL_E_UNKNOWN, -4100)                                                                      \
    X(PETAL_E_CLIENT_APP_RAISED_EXCEPTION, -4101)                                                  \
    X(PETAL_E_MESSAGE_UNAVAILABLE, -4102)                                                          \
    X(PETAL_E_REPLY_MESSAGE_UNAVAILABLE, -4103)                                                    \
    X(PETAL_E_NODE_UNAVAILABLE, -4104)                                                             \
    X(PETAL_E_CLIENT_APP_CRASHED, -4105)                                                           \
    X(PETAL_E_LOAD_CLIENT_APP_EXCEPTION, -4106)                                                    \
    X(PETAL_E_MOD_FAILED_PRECONDITION, -4107)                                                      \
    X(PETAL_E_INVALID_BUNDLE, -4108)                                                               \
    X(PETAL_E_LOAD_SERVER_APP_EXCEPTION, -4109)                                                    \
    X(PETAL_E_SERVER_APP_RAISED_EXCEPTION, -4110)
#define ASSERT_ERROR(name, value) _Static_assert(name == (value), #name " was renumbered");
FROZEN_ERRORS(ASSERT_ERROR)

_Static_assert(PETAL_DTYPE_FLOAT32 == 1 && PETAL_DTYPE_FLOAT64 == 2 && PETAL_DTYPE_INT8 == 3 &&
                   PETAL_DTYPE_INT16 == 4 && PETAL_DTYPE_INT32 == 5 && PETAL_DTYPE_INT64 == 6 &&
                   PETAL_DTYPE_UINT8 == 7 && PETAL_DTYPE_UINT16 == 8 && PETAL_DTYPE_UINT32 == 9 &&
                   PETAL_DTYPE_UINT64 == 10 && PETAL_DTYPE_BOOL == 11,
               "dtype numbers");
_Static_assert(PETAL_VALUE_INT64 == 1 && PETAL_VALUE_UINT64 == 2 && PETAL_VALUE_DOUBLE == 3 &&
                   PETAL_VALUE_BOOL == 4 && PETAL_VALUE_STRING == 5 && PETAL_VALUE_BYTES == 6 &&
                   PETAL_VALUE_INT64_LIST == 7 && PETAL_VALUE_UINT64_LIST == 8 &&
                   PETAL_VALUE_DOUBLE_LIST == 9 && PETAL_VALUE_BOOL_LIST == 10 &&
                   PETAL_VALUE_STRING_LIST == 11,
               "value type numbers");
_Static_assert(PETAL_RECORD_ARRAYS == 1 && PETAL_RECORD_METRICS == 2 && PETAL_RECORD_CONFIG == 3,
               "record kinds");
_Static_assert(PETAL_PLUGIN_CLIENT == 1 && PETAL_PLUGIN_SERVER == 2, "plugin kinds");
_Static_assert(PETAL_LOG_ERROR == 0 && PETAL_LOG_WARN == 1 && PETAL_LOG_INFO == 2 &&
                   PETAL_LOG_DEBUG == 3,
               "log levels");
_Static_assert(PETAL_MAX_NDIM == 16 && PETAL_GROUP_ID_MAX == 64 && PETAL_MESSAGE_TYPE_MAX == 64,
               "limits");
_Static_assert(PETAL_SERVER_NODE_ID == 0, "server node id");

/* ---- the host table: every slot at its place (v1.0, then the v1.1 additions) -------------- */

#define HOST_SLOTS(X)                                                                              \
    X(strerror)                                                                                    \
    X(log)                                                                                         \
    X(alloc)                                                                                       \
    X(free)                                                                                        \
    X(array_dtype)                                                                                 \
    X(array_ndim)                                                                                  \
    X(array_shape)                                                                                 \
    X(array_numel)                                                                                 \
    X(array_nbytes)                                                                                \
    X(array_data)                                                                                  \
    X(array_data_mut)                                                                              \
    X(arrayrecord_count)                                                                           \
    X(arrayrecord_name_at)                                                                         \
    X(arrayrecord_at)                                                                              \
    X(arrayrecord_get)                                                                             \
    X(arrayrecord_add)                                                                             \
    X(arrayrecord_add_wrap)                                                                        \
    X(arrayrecord_add_ref)                                                                         \
    X(metricrecord_count)                                                                          \
    X(metricrecord_at)                                                                             \
    X(metricrecord_get)                                                                            \
    X(metricrecord_set)                                                                            \
    X(configrecord_count)                                                                          \
    X(configrecord_at)                                                                             \
    X(configrecord_get)                                                                            \
    X(configrecord_set)                                                                            \
    X(recorddict_alloc)                                                                            \
    X(recorddict_free)                                                                             \
    X(recorddict_count)                                                                            \
    X(recorddict_name_at)                                                                          \
    X(recorddict_kind_at)                                                                          \
    X(recorddict_arrays)                                                                           \
    X(recorddict_metrics)                                                                          \
    X(recorddict_config)                                                                           \
    X(recorddict_add_arrays)                                                                       \
    X(recorddict_add_metrics)                                                                      \
    X(recorddict_add_config)                                                                       \
    X(message_alloc)                                                                               \
    X(message_free)                                                                                \
    X(message_metadata)                                                                            \
    X(message_content)                                                                             \
    X(message_error_code)                                                                          \
    X(message_error_reason)                                                                        \
    X(context_run_id)                                                                              \
    X(context_node_id)                                                                             \
    X(context_run_config)                                                                          \
    X(context_node_config)                                                                         \
    X(context_state)                                                                               \
    X(context_set_error)                                                                           \
    X(grid_node_ids)                                                                               \
    X(grid_send_and_stream)                                                                        \
    X(grid_push)                                                                                   \
    X(grid_pull)                                                                                   \
    X(grid_record_metrics)                                                                         \
    X(grid_set_final_arrays)                                                                       \
    /* v1.1 */                                                                                     \
    X(run_default_server)

enum host_slot {
#define SLOT_ENUM(name) SLOT_##name,
    HOST_SLOTS(SLOT_ENUM)
#undef SLOT_ENUM
        HOST_SLOTS_V1
};
_Static_assert(SLOT_grid_set_final_arrays + 1 == 55, "ABI v1.0 has 55 host functions");
_Static_assert(HOST_SLOTS_V1 == 56, "ABI v1.1 has 56 host functions (v1.0 + run_default_server)");

#define HEADER_SIZE (2 * sizeof(uint32_t))
#define SLOT_ASSERT(name)                                                                          \
    _Static_assert(offsetof(petal_host_api_v1_t, name) ==                                          \
                       HEADER_SIZE + SLOT_##name * sizeof(void (*)(void)),                         \
                   "host slot " #name " moved");
HOST_SLOTS(SLOT_ASSERT)
_Static_assert(offsetof(petal_host_api_v1_t, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(petal_host_api_v1_t, abi_version) == 4, "abi_version second");
_Static_assert(sizeof(petal_host_api_v1_t) == HEADER_SIZE + HOST_SLOTS_V1 * sizeof(void (*)(void)),
               "the host table has grown: append the slot to HOST_SLOTS above");

/* ---- struct layouts on x86_64 (the numbers plugins were compiled with) -------------------- */

#if defined(__x86_64__)
_Static_assert(sizeof(petal_host_api_v1_t) == 456, "host table size (v1.1)");
_Static_assert(offsetof(petal_host_api_v1_t, strerror) == 8, "host strerror");
_Static_assert(offsetof(petal_host_api_v1_t, log) == 16, "host log");
_Static_assert(offsetof(petal_host_api_v1_t, grid_set_final_arrays) == 440, "host v1.0 last slot");
_Static_assert(offsetof(petal_host_api_v1_t, run_default_server) == 448, "host v1.1 slot");

_Static_assert(sizeof(petal_metadata_t) == 192, "metadata size");
_Static_assert(offsetof(petal_metadata_t, struct_size) == 0, "md struct_size");
_Static_assert(offsetof(petal_metadata_t, abi_version) == 4, "md abi_version");
_Static_assert(offsetof(petal_metadata_t, run_id) == 8, "md run_id");
_Static_assert(offsetof(petal_metadata_t, message_id) == 16, "md message_id");
_Static_assert(offsetof(petal_metadata_t, src_node_id) == 24, "md src_node_id");
_Static_assert(offsetof(petal_metadata_t, dst_node_id) == 32, "md dst_node_id");
_Static_assert(offsetof(petal_metadata_t, reply_to_message_id) == 40, "md reply_to");
_Static_assert(offsetof(petal_metadata_t, ttl) == 48, "md ttl");
_Static_assert(offsetof(petal_metadata_t, created_at) == 56, "md created_at");
_Static_assert(offsetof(petal_metadata_t, group_id) == 64, "md group_id");
_Static_assert(offsetof(petal_metadata_t, message_type) == 128, "md message_type");

_Static_assert(sizeof(petal_value_t) == 24, "value size");
_Static_assert(offsetof(petal_value_t, type) == 0, "value type");
_Static_assert(offsetof(petal_value_t, reserved) == 4, "value reserved");
_Static_assert(offsetof(petal_value_t, len) == 8, "value len");
_Static_assert(offsetof(petal_value_t, as) == 16, "value as");
_Static_assert(sizeof(((petal_value_t *)0)->as) == 8, "value union");

_Static_assert(sizeof(petal_plugin_info_t) == 48, "info size");
_Static_assert(offsetof(petal_plugin_info_t, struct_size) == 0, "info struct_size");
_Static_assert(offsetof(petal_plugin_info_t, abi_version) == 4, "info abi_version");
_Static_assert(offsetof(petal_plugin_info_t, kind) == 8, "info kind");
_Static_assert(offsetof(petal_plugin_info_t, reserved) == 12, "info reserved");
_Static_assert(offsetof(petal_plugin_info_t, name) == 16, "info name");
_Static_assert(offsetof(petal_plugin_info_t, version) == 24, "info version");
_Static_assert(offsetof(petal_plugin_info_t, client) == 32, "info client");
_Static_assert(offsetof(petal_plugin_info_t, server) == 40, "info server");

_Static_assert(sizeof(petal_client_ops_t) == 48, "client ops size");
_Static_assert(offsetof(petal_client_ops_t, struct_size) == 0, "client struct_size");
_Static_assert(offsetof(petal_client_ops_t, abi_version) == 4, "client abi_version");
_Static_assert(offsetof(petal_client_ops_t, init) == 8, "client init");
_Static_assert(offsetof(petal_client_ops_t, train) == 16, "client train");
_Static_assert(offsetof(petal_client_ops_t, evaluate) == 24, "client evaluate");
_Static_assert(offsetof(petal_client_ops_t, query) == 32, "client query");
_Static_assert(offsetof(petal_client_ops_t, fini) == 40, "client fini");

_Static_assert(sizeof(petal_server_ops_t) == 16, "server ops size");
_Static_assert(offsetof(petal_server_ops_t, struct_size) == 0, "server struct_size");
_Static_assert(offsetof(petal_server_ops_t, abi_version) == 4, "server abi_version");
_Static_assert(offsetof(petal_server_ops_t, main) == 8, "server main");
#endif

/* ---- the table this host hands out -------------------------------------------------------- */

START_TEST(test_table_header)
{
    const petal_host_api_v1_t *h = petal_host_api();
    ck_assert_ptr_nonnull(h);
    ck_assert_uint_eq(h->struct_size, sizeof(petal_host_api_v1_t));
    ck_assert_uint_eq(h->abi_version, PETAL_ABI_VERSION);
    ck_assert_ptr_eq(petal_host_api(), h); /* static storage, one table */
}
END_TEST

START_TEST(test_table_has_no_null_slot)
{
    const petal_host_api_v1_t *h = petal_host_api();
    const unsigned char *base = (const unsigned char *)h;
    size_t slots = (h->struct_size - HEADER_SIZE) / sizeof(void (*)(void));
    ck_assert_uint_eq(slots, HOST_SLOTS_V1);
    for (size_t i = 0; i < slots; i++) {
        void (*fn)(void);
        memcpy(&fn, base + HEADER_SIZE + i * sizeof(fn), sizeof(fn));
        ck_assert_msg(fn != NULL, "host table slot %zu is NULL", i);
    }
}
END_TEST

START_TEST(test_table_slots_are_the_linked_functions)
{
    const petal_host_api_v1_t *h = petal_host_api();
    ck_assert(h->strerror == petal_strerror);
    ck_assert(h->alloc == petal_alloc);
    ck_assert(h->arrayrecord_add == petal_arrayrecord_add);
    ck_assert(h->recorddict_add_config == petal_recorddict_add_config);
    ck_assert(h->message_alloc == petal_message_alloc);
    ck_assert(h->context_set_error == petal_context_set_error);
    ck_assert(h->grid_set_final_arrays == petal_grid_set_final_arrays);
    ck_assert(h->run_default_server == petal_run_default_server);
    ck_assert_str_eq(h->strerror(PETAL_EABI), "plugin ABI mismatch");
}
END_TEST

START_TEST(test_host_has)
{
    petal_host_api_v1_t t;
    memset(&t, 0, sizeof(t));
    /* a host that only has the slots up to grid_node_ids */
    t.struct_size =
        (uint32_t)(offsetof(petal_host_api_v1_t, grid_node_ids) + sizeof(t.grid_node_ids));
    ck_assert(PETAL_HOST_HAS(&t, strerror));
    ck_assert(PETAL_HOST_HAS(&t, grid_node_ids));
    ck_assert(!PETAL_HOST_HAS(&t, grid_send_and_stream));
    ck_assert(!PETAL_HOST_HAS(&t, grid_set_final_arrays));
    ck_assert(PETAL_HOST_HAS(petal_host_api(), grid_set_final_arrays));
    /* a v1.0 host: everything up to grid_set_final_arrays, not the v1.1 slot */
    t.struct_size = (uint32_t)(offsetof(petal_host_api_v1_t, grid_set_final_arrays) +
                               sizeof(t.grid_set_final_arrays));
    ck_assert(PETAL_HOST_HAS(&t, grid_set_final_arrays));
    ck_assert(!PETAL_HOST_HAS(&t, run_default_server));
    ck_assert(PETAL_HOST_HAS(petal_host_api(), run_default_server));
}
END_TEST

START_TEST(test_value_helpers)
{
    petal_value_t v = petal_value_i64(-3);
    int64_t i = 0;
    double d = 0;
    ck_assert_int_eq(petal_value_as_i64(&v, &i), 0);
    ck_assert_int_eq(i, -3);
    v = petal_value_f64(2.5);
    ck_assert_int_eq(petal_value_as_i64(&v, &i), PETAL_ETYPE);
    ck_assert_int_eq(petal_value_as_f64(&v, &d), 0);
    ck_assert(d == 2.5);
    v = petal_value_str("ab", 2);
    ck_assert_int_eq(petal_value_as_f64(&v, &d), PETAL_ETYPE);
    ck_assert_uint_eq(v.len, 2);
}
END_TEST

static Suite *
abi_layout_suite(void)
{
    Suite *s = suite_create("abi_layout");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_table_header);
    tcase_add_test(tc, test_table_has_no_null_slot);
    tcase_add_test(tc, test_table_slots_are_the_linked_functions);
    tcase_add_test(tc, test_host_has);
    tcase_add_test(tc, test_value_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(abi_layout_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
