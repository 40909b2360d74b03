/* A Corral task in C: its arguments, an environment variable, stdout, a file written into a
 * preopened directory named `data`, and an exit code.
 *
 *   clang --target=wasm32-wasi -O2 -o hello.wasm hello.c
 *   corral run --dir out::data --env WHO=you hello.wasm 0
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *who = getenv("WHO");
    printf("hello from C, %s: argv[0]=%s argc=%d\n", who ? who : "nobody", argv[0], argc);

    FILE *out = fopen("data/greeting.txt", "w");
    if (out == NULL) {
        perror("cannot open data/greeting.txt (give --dir HOST::data)");
        return 2;
    }
    fprintf(out, "written by a C task for %s\n", who ? who : "nobody");
    fclose(out);

    return argc > 1 ? atoi(argv[1]) : 0;
}
