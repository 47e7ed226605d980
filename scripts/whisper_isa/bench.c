/* whisper.cpp's speed on one clip, for comparing builds with and without AVX-512 on the same
 * machine (scripts/bench_whisper_isa.sh). Usage: bench MODEL PCM_F32LE_16K THREADS REPEATS.
 * Prints one line per repeat: seconds of inference. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "whisper.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL PCM_F32LE_16K THREADS REPEATS\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int n = (int)(bytes / sizeof(float));
    float *pcm = malloc(bytes);
    if (!pcm || fread(pcm, sizeof(float), n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    whisper_log_set(NULL, NULL);
    struct whisper_context *ctx =
        whisper_init_from_file_with_params(argv[1], whisper_context_default_params());
    if (!ctx) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    struct whisper_full_params p = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
    p.n_threads = atoi(argv[3]);
    p.language = "en";
    p.print_progress = false;
    p.print_realtime = false;
    p.print_timestamps = false;
    p.print_special = false;
    for (int r = 0; r < atoi(argv[4]); r++) {
        double t0 = now();
        if (whisper_full(ctx, p, pcm, n) != 0) {
            fprintf(stderr, "whisper_full failed\n");
            return 1;
        }
        printf("%.3f %.1f\n", now() - t0, n / 16000.0);
        fflush(stdout);
    }
    whisper_free(ctx);
    free(pcm);
    return 0;
}
