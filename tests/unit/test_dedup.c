/* Tests of the message-id deduplication window (node/dedup.h) and batch filtering (batch_filter). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "node/dedup.h"
#include "partition/record.h"

static void make_id(uint8_t id[16], uint64_t v)
{
	memset(id, 0, 16);
	memcpy(id, &v, sizeof(v));
	id[15] = (uint8_t)(v * 31);
}

Test(dedup, remembers_exactly_the_last_capacity_ids)
{
	/* After adding N ids to a window of capacity C, the last C are seen and the older ones are not. */
	struct dedup *d = dedup_new(100);
	uint8_t id[16];
	for (uint64_t i = 0; i < 1000; i++) {
		make_id(id, i);
		dedup_add(d, id);
	}
	cr_assert_eq(dedup_count(d), 100);
	for (uint64_t i = 0; i < 1000; i++) {
		make_id(id, i);
		cr_assert_eq(dedup_seen(d, id), i >= 900, "id %llu", (unsigned long long)i);
	}
	dedup_free(d);
}

Test(dedup, agrees_with_a_reference_model_under_random_adds)
{
	/* A long random sequence with many repeats and hash collisions matches a brute-force window. */
	enum { CAP = 37, N = 20000, SPACE = 200 };
	struct dedup *d = dedup_new(CAP);
	uint64_t window[CAP];
	uint32_t n = 0, head = 0;
	srand(7);
	for (int step = 0; step < N; step++) {
		uint64_t v = (uint64_t)(rand() % SPACE);
		uint8_t id[16];
		make_id(id, v);
		bool in_model = false;
		for (uint32_t i = 0; i < n; i++)
			in_model |= window[i] == v;
		cr_assert_eq(dedup_seen(d, id), in_model, "step %d", step);
		if (!in_model) {
			if (n < CAP)
				window[n++] = v;
			else
				window[head] = v;
			head = (head + 1) % CAP;
			if (n < CAP)
				head = n % CAP;
		}
		dedup_add(d, id);
	}
	dedup_free(d);
}

Test(dedup, filtering_a_batch_keeps_the_chosen_messages_dense_and_valid)
{
	/* batch_filter keeps the chosen frames in order, renumbers their deltas, and the batch verifies. */
	const char *texts[5] = {"zero", "one", "two!", "three", "four"};
	const void *pl[5];
	uint32_t lens[5];
	for (int i = 0; i < 5; i++) {
		pl[i] = texts[i];
		lens[i] = (uint32_t)strlen(texts[i]);
	}
	uint8_t batch[1024];
	size_t len = batch_build(batch, sizeof(batch), 5, pl, lens, NULL, NULL, 1000);
	cr_assert_gt(len, 0);
	bool keep[5] = {false, true, false, true, true};
	size_t n = batch_filter(batch, len, keep);
	cr_assert_gt(n, 0);
	cr_assert_lt(n, len);
	cr_assert_eq(batch_verify(batch, n, true), 0);
	struct batch_hdr h;
	batch_hdr_decode(batch, &h);
	cr_assert_eq(h.message_count, 3);
	size_t f = 256;
	const char *want[3] = {"one", "three", "four"};
	for (uint32_t i = 0; i < 3; i++) {
		struct batch_frame_hdr fh;
		batch_frame_hdr_decode(batch + f, &fh);
		cr_assert_eq(fh.offset_delta, i);
		cr_assert_eq(fh.payload_length, strlen(want[i]));
		cr_assert_eq(memcmp(batch + f + 48, want[i], fh.payload_length), 0);
		f += 48 + fh.payload_length;
	}
	bool none[3] = {false, false, false};
	cr_assert_eq(batch_filter(batch, n, none), 0);
	cr_assert_eq(batch_verify(batch, n, true), 0, "a batch with nothing kept is left unchanged");
}
