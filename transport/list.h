/*
 * list — an intrusive, circular, doubly linked list (a head is a link whose prev and next point at
 * itself when empty), shared by the transports' connection and call lists.
 */
#ifndef GALGO_LIST_H
#define GALGO_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct link {
	struct link *prev, *next;
};

static inline void list_init(struct link *h)
{
	h->prev = h->next = h;
}

static inline bool list_empty(const struct link *h)
{
	return h->next == h;
}

/* Appends n at the tail of h. */
static inline void list_push(struct link *h, struct link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

/* Unlinks n (which then forms an empty list of its own). */
static inline void list_remove(struct link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif /* GALGO_LIST_H */
