/* SPDX-License-Identifier: MIT */
/* list: intrusive doubly-linked lists, for structs that carry their own links (jobs, exchanges,
 * connections, outbound calls). A list is a head pointer, and for LIST_APPEND and
 * LIST_UNLINK_TAIL a tail pointer too; PREV and NEXT name the members that link a node, so one
 * struct can sit on several lists. The arguments are plain lvalues: each may be evaluated more
 * than once. Uses: nothing. */
#ifndef SB_LIST_H
#define SB_LIST_H

/* Put node first. */
#define LIST_PUSH(head, node, PREV, NEXT)                                                      \
    do {                                                                                       \
        (node)->PREV = NULL;                                                                   \
        (node)->NEXT = (head);                                                                 \
        if (head)                                                                              \
            (head)->PREV = (node);                                                             \
        (head) = (node);                                                                       \
    } while (0)

/* Put node last (the list keeps its order of arrival). */
#define LIST_APPEND(head, tail, node, PREV, NEXT)                                              \
    do {                                                                                       \
        (node)->PREV = (tail);                                                                 \
        (node)->NEXT = NULL;                                                                   \
        if (tail)                                                                              \
            (tail)->NEXT = (node);                                                             \
        else                                                                                   \
            (head) = (node);                                                                   \
        (tail) = (node);                                                                       \
    } while (0)

/* Take node out of the list it is on; its links are cleared. */
#define LIST_UNLINK(head, node, PREV, NEXT)                                                    \
    do {                                                                                       \
        if ((node)->PREV)                                                                      \
            (node)->PREV->NEXT = (node)->NEXT;                                                 \
        else                                                                                   \
            (head) = (node)->NEXT;                                                             \
        if ((node)->NEXT)                                                                      \
            (node)->NEXT->PREV = (node)->PREV;                                                 \
        (node)->PREV = (node)->NEXT = NULL;                                                    \
    } while (0)

/* The same for a list with a tail pointer. */
#define LIST_UNLINK_TAIL(head, tail, node, PREV, NEXT)                                         \
    do {                                                                                       \
        if (!(node)->NEXT)                                                                     \
            (tail) = (node)->PREV;                                                             \
        LIST_UNLINK(head, node, PREV, NEXT);                                                   \
    } while (0)

#endif
