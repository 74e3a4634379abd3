/* SPDX-License-Identifier: MIT */
/* check: the assertion macros of the C unit tests. A failed check prints file:line and the
 * expression, and the test exits non-zero at the end (CHECK_DONE). */
#ifndef SB_TEST_CHECK_H
#define SB_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        check_count++;                                                                 \
        if (!(cond)) {                                                                 \
            check_failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_STR(a, b)                                                                \
    do {                                                                               \
        const char *check_a_ = (a), *check_b_ = (b);                                   \
        check_count++;                                                                 \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {              \
            check_failures++;                                                          \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
                    #a, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
        }                                                                              \
    } while (0)

/* Two integers (any integer type); on failure both values are printed. */
#define CHECK_EQ(a, b)                                                                        \
    do {                                                                                    \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                     \
        check_count++;                                                                      \
        if (check_a_ != check_b_) {                                                         \
            check_failures++;                                                               \
            fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #a,   \
                    check_a_, check_b_);                                                    \
        }                                                                                   \
    } while (0)

#define CHECK_DONE()                                                                   \
    (fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures),           \
     check_failures ? 1 : 0)

#endif
