/* One work unit. Compiled once per unit number (-DUNIT=n): the constants differ, so
 * every copy is real, separately optimised code. Each kernel is checked against an
 * independent computation; the unit returns 1 when all agree. */
#include <stdint.h>
#include <string.h>

#ifndef UNIT
#define UNIT 1
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define ENTRY CAT(unit_, UNIT)
#define SEED (0x9e3779b9u * (uint32_t)UNIT + 0x7f4a7c15u)

static uint32_t rng_state;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ---- CRC-32 (IEEE), table-driven and bitwise ---- */
static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc_fast(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}
static uint32_t crc_slow(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* ---- LZ77 compressor with a hash chain, and its decompressor ---- */
#define WIN 4096
#define MINM 3
#define MAXM 18
static size_t lz_compress(const uint8_t *in, size_t n, uint8_t *out) {
    static int32_t head[1 << 12];
    static int32_t prev[1 << 15];
    size_t o = 0, i = 0;
    for (size_t k = 0; k < (1 << 12); k++) head[k] = -1;
    while (i < n) {
        size_t flag_at = o++;
        uint8_t flags = 0;
        for (int bit = 0; bit < 8 && i < n; bit++) {
            size_t best = 0, bestd = 0;
            if (i + MINM <= n) {
                uint32_t h = ((uint32_t)in[i] * 2654435761u ^ (uint32_t)in[i + 1] * 40503u ^
                              in[i + 2]) & 0xfff;
                int32_t cand = head[h];
                int chain = 16 + (UNIT % 8);
                while (cand >= 0 && (size_t)(i - (size_t)cand) <= WIN && chain--) {
                    size_t m = 0;
                    while (m < MAXM && i + m < n && in[cand + m] == in[i + m]) m++;
                    if (m > best) { best = m; bestd = i - (size_t)cand; }
                    cand = prev[cand & 0x7fff];
                }
                prev[i & 0x7fff] = head[h];
                head[h] = (int32_t)i;
            }
            if (best >= MINM) {
                flags |= (uint8_t)(1u << bit);
                uint16_t tok = (uint16_t)(((bestd - 1) << 4) | (best - MINM));
                out[o++] = (uint8_t)(tok >> 8);
                out[o++] = (uint8_t)tok;
                for (size_t s = 1; s < best && i + s + MINM <= n; s++) {
                    uint32_t h = ((uint32_t)in[i + s] * 2654435761u ^
                                  (uint32_t)in[i + s + 1] * 40503u ^ in[i + s + 2]) & 0xfff;
                    prev[(i + s) & 0x7fff] = head[h];
                    head[h] = (int32_t)(i + s);
                }
                i += best;
            } else {
                out[o++] = in[i++];
            }
        }
        out[flag_at] = flags;
    }
    return o;
}
static size_t lz_decompress(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t flags = in[i++];
        for (int bit = 0; bit < 8 && i < n; bit++) {
            if (flags & (1u << bit)) {
                uint16_t tok = (uint16_t)((in[i] << 8) | in[i + 1]);
                i += 2;
                size_t d = (size_t)(tok >> 4) + 1, m = (size_t)(tok & 15) + MINM;
                for (size_t k = 0; k < m; k++, o++) out[o] = out[o - d];
            } else {
                out[o++] = in[i++];
            }
        }
    }
    return o;
}

/* ---- a small stack-machine interpreter ---- */
enum { OP_PUSH, OP_ADD, OP_SUB, OP_MUL, OP_DUP, OP_SWAP, OP_OVER, OP_DROP, OP_JNZ, OP_DEC,
       OP_ROT, OP_HALT };
static int64_t vm_run(const int32_t *code) {
    int64_t st[64];
    int sp = 0, pc = 0;
    for (;;) {
        switch (code[pc++]) {
        case OP_PUSH: st[sp++] = code[pc++]; break;
        case OP_ADD: sp--; st[sp - 1] += st[sp]; break;
        case OP_SUB: sp--; st[sp - 1] -= st[sp]; break;
        case OP_MUL: sp--; st[sp - 1] *= st[sp]; break;
        case OP_DUP: st[sp] = st[sp - 1]; sp++; break;
        case OP_SWAP: { int64_t t = st[sp - 1]; st[sp - 1] = st[sp - 2]; st[sp - 2] = t; } break;
        case OP_OVER: st[sp] = st[sp - 2]; sp++; break;
        case OP_DROP: sp--; break;
        case OP_DEC: st[sp - 1]--; break;
        case OP_ROT: { int64_t t = st[sp - 3]; st[sp - 3] = st[sp - 2];
                       st[sp - 2] = st[sp - 1]; st[sp - 1] = t; } break;
        case OP_JNZ: { int32_t target = code[pc++]; if (st[sp - 1]) pc = target; } break;
        case OP_HALT: return st[sp - 1];
        default: return -1;
        }
    }
}
/* Fibonacci by iteration in bytecode: stack a b n. */
static int64_t vm_fib(int32_t n) {
    const int32_t code[] = {
        OP_PUSH, 0, OP_PUSH, 1, OP_PUSH, n,   /* a b n */
        /* 6: */ OP_ROT, OP_ROT,              /* n a b */
        OP_DUP, OP_ROT, OP_ADD,               /* n b a+b */
        OP_ROT,                               /* b a+b n */
        OP_DEC, OP_JNZ, 6,
        OP_DROP, OP_DROP, OP_HALT,
    };
    return vm_run(code);
}
static int64_t fib_ref(int n) {
    int64_t a = 0, b = 1;
    for (int i = 0; i < n; i++) { int64_t t = a + b; a = b; b = t; }
    return a;
}

/* ---- integer matrix product, checked by a column-sum identity ---- */
#define MN (24 + (UNIT % 9))
static int matrix_check(uint32_t *sum) {
    static int32_t a[40][40], b[40][40], c[40][40];
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) { a[i][j] = (int32_t)(rng() % 97); b[i][j] = (int32_t)(rng() % 89); }
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) {
            int32_t s = 0;
            for (int k = 0; k < MN; k++) s += a[i][k] * b[k][j];
            c[i][j] = s;
        }
    /* sum over i,j of C = sum over k of (column-sum of A at k) * (row-sum of B at k) */
    int64_t total = 0, ident = 0;
    for (int i = 0; i < MN; i++) for (int j = 0; j < MN; j++) total += c[i][j];
    for (int k = 0; k < MN; k++) {
        int64_t ca = 0, rb = 0;
        for (int i = 0; i < MN; i++) ca += a[i][k];
        for (int j = 0; j < MN; j++) rb += b[k][j];
        ident += ca * rb;
    }
    *sum ^= (uint32_t)total;
    return total == ident;
}

/* ---- insertion sort and a shell sort must agree ---- */
static int sort_check(uint32_t *sum) {
    enum { SN = 300 + UNIT % 50 };
    static uint32_t x[SN], y[SN];
    for (int i = 0; i < SN; i++) x[i] = y[i] = rng() % 100000u;
    for (int i = 1; i < SN; i++) {
        uint32_t v = x[i]; int j = i - 1;
        while (j >= 0 && x[j] > v) { x[j + 1] = x[j]; j--; }
        x[j + 1] = v;
    }
    for (int gap = SN / 2; gap > 0; gap /= 2)
        for (int i = gap; i < SN; i++) {
            uint32_t v = y[i]; int j = i;
            while (j >= gap && y[j - gap] > v) { y[j] = y[j - gap]; j -= gap; }
            y[j] = v;
        }
    *sum ^= x[SN / 2] + x[SN - 1];
    return memcmp(x, y, sizeof x) == 0;
}

int ENTRY(uint32_t *sum) {
    static uint8_t text[8192], packed[8192 + 8192 / 8 + 16], back[8192];
    int ok = 1;
    rng_state = SEED;
    crc_init();
    ok &= crc_fast((const uint8_t *)"123456789", 9) == 0xcbf43926u;
    /* Compressible text: words drawn from a small vocabulary. */
    static const char *words[] = {"arch", "bench", "qemu", "user", "cross", "native", "vm",
                                  "build", "image", "index", "layer", "arm64", "amd64"};
    size_t n = 0;
    while (n < sizeof text - 8) {
        const char *w = words[rng() % 13];
        size_t l = strlen(w);
        memcpy(text + n, w, l);
        n += l;
        text[n++] = (uint8_t)(rng() % 7 == 0 ? '\n' : ' ');
    }
    size_t packed_n = lz_compress(text, n, packed);
    size_t back_n = lz_decompress(packed, packed_n, back);
    ok &= back_n == n && memcmp(text, back, n) == 0 && packed_n < n;
    uint32_t crc = crc_fast(text, n);
    ok &= crc == crc_slow(back, back_n);
    int fn = 40 + UNIT % 40;
    ok &= vm_fib(fn) == fib_ref(fn);
    *sum = crc ^ (uint32_t)packed_n ^ (uint32_t)vm_fib(fn);
    ok &= matrix_check(sum);
    ok &= sort_check(sum);
    return ok;
}
