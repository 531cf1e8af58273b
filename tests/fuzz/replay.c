/* replay.c - runs a fuzz corpus (plus every prefix and some byte flips) without libFuzzer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Mutations are only derived from seeds up to this size, to keep the CTest run short. */
#define MUTATE_MAX 16384

static long inputs;

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data;
    unsigned char *copy;
    long size;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    data = malloc((size_t)size + 1);
    copy = malloc((size_t)size + 1);
    if (data == NULL || copy == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        fclose(f);
        free(data);
        free(copy);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, (size_t)size);
    inputs++;
    if (size <= MUTATE_MAX) {
        static const unsigned char masks[] = {0x01, 0x80, 0xff};
        for (long cut = 0; cut < size; cut++) {
            /* the target copies its input into an exact-size buffer, so ASan sees over-reads */
            memcpy(copy, data, (size_t)cut);
            LLVMFuzzerTestOneInput(copy, (size_t)cut);
            inputs++;
        }
        for (long i = 0; i < size; i++) {
            memcpy(copy, data, (size_t)size);
            copy[i] ^= masks[i % sizeof(masks)];
            LLVMFuzzerTestOneInput(copy, (size_t)size);
            inputs++;
        }
    }
    free(data);
    free(copy);
    return 0;
}

static int
replay_path(const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *de;
    int rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: no such file or directory: %s\n", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        return replay_file(path);
    }
    dir = opendir(path);
    if (dir == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    while ((de = readdir(dir)) != NULL) {
        char full[4096];
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
        if (replay_path(full) != 0) {
            rc = -1;
        }
    }
    closedir(dir);
    return rc;
}

int
main(int argc, char **argv)
{
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (replay_path(argv[i]) != 0) {
            rc = 1;
        }
    }
    printf("replayed %ld inputs\n", inputs);
    if (inputs == 0) {
        fprintf(stderr, "replay: the corpus is empty\n");
        return 1;
    }
    return rc;
}
