#include <stdio.h>
#include <sys/utsname.h>
#if defined(__x86_64__)
#define TARGET "x86_64"
#elif defined(__aarch64__)
#define TARGET "aarch64"
#elif defined(__arm__)
#define TARGET "armv7l"
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define TARGET "ppc64le"
#elif defined(__s390x__)
#define TARGET "s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define TARGET "riscv64"
#else
#define TARGET "unknown"
#endif
int main(void) {
    struct utsname u;
    unsigned long acc = 0;
    for (unsigned long i = 1; i <= 1000UL * SIZE; i++) acc += i;
    int ok = acc == 1000UL * SIZE * (1000UL * SIZE + 1) / 2;
    if (uname(&u) != 0) return 2;
    printf("tiny arch=%s target=%s selftest=%s\n", u.machine, TARGET, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
