// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * splice_tunnels: the two sockets of an established tunnel (client and upstream, both plain TCP)
 * are put in loom_splice_socks by Loom itself, each with its peer's key in loom_splice_ends.
 * loom_splice_verdict (sk_skb stream verdict, attached to loom_splice_socks) sends every segment a
 * spliced socket receives out of its peer (bpf_sk_redirect_hash to egress), so the tunnel's bytes
 * no longer reach the process; it counts them per end, which is how Loom knows how many bytes it
 * must wait for before it forwards a half-close, and what to log.
 *
 * Order. Each direction is in one of three states, decided here, one segment at a time (the
 * segments of a socket come through one by one):
 *
 *   NEW      the first segment after the socket joined the map: sent on when the peer is in the
 *            map already (KERNEL), else left to the process (PROCESS). So a segment that arrives
 *            between the two sockets' insertions is never dropped, and never overtaken.
 *   PROCESS  segments go to the process, which reads and forwards them in order. Once the process
 *            has forwarded (written to the peer) every byte left to it, which it says in
 *            loom_splice_forwarded, the next segment is sent on by the kernel: what the process
 *            wrote is queued on the peer before anything the kernel sends there.
 *   KERNEL   sent on; a peer gone from the map has closed, and the segment is dropped.
 */
#include "loom.h"

enum {
	STAT_SKB_REDIRECTS = 0, /* segments sent on out of the peer */
	STAT_SKB_BYTES = 1,     /* their bytes */
	STAT_SKB_DROPPED = 2,   /* segments whose peer had left the map (the tunnel is closing) */
	STAT_SKB_PASSED = 3,    /* segments left to the process (PROCESS, or no splice entry) */
	STAT_SKB_PASSED_BYTES = 4,
};

enum {
	END_NEW = 0,
	END_KERNEL = 1,
	END_PROCESS = 2,
};

struct loom_splice_end {
	struct loom_sock_key peer; /* where this socket's bytes go */
	__u64 bytes;               /* bytes the kernel sent on */
	__u64 segments;
	__u64 passed;              /* bytes left to the process */
	__u32 state;               /* END_* */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct loom_sock_key);
	__type(value, __u64);
} loom_splice_socks SEC(".maps");

/* Written by Loom only before the socket joins loom_splice_socks; then by this program only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct loom_sock_key);
	__type(value, struct loom_splice_end);
} loom_splice_ends SEC(".maps");

/* Written by Loom only: bytes of each socket's `passed` it has written to the peer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct loom_sock_key);
	__type(value, __u64);
} loom_splice_forwarded SEC(".maps");

static __always_inline int pass(struct loom_splice_end *end, __u64 len)
{
	end->passed += len;
	loom_stat_add(STAT_SKB_PASSED, 1);
	loom_stat_add(STAT_SKB_PASSED_BYTES, len);
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int loom_splice_verdict(struct __sk_buff *skb)
{
	struct loom_sock_key key = {};
	struct loom_splice_end *end;
	__u64 len = skb->len;

	/*
	 * No data: the end of stream reaches the verdict as an empty segment. Passed on, it would sit
	 * in the receive queue as an empty message, and the process's read would not see the end of
	 * stream; the end is the socket's state (the read sees it), not data: nothing to deliver.
	 */
	if (len == 0)
		return SK_DROP;
	if (!LOOM_KEY_FROM(skb, &key))
		return SK_PASS;
	end = bpf_map_lookup_elem(&loom_splice_ends, &key);
	if (!end) {
		loom_stat_add(STAT_SKB_PASSED, 1);
		loom_stat_add(STAT_SKB_PASSED_BYTES, len);
		return SK_PASS;
	}
	if (end->state == END_PROCESS) {
		__u64 *done = bpf_map_lookup_elem(&loom_splice_forwarded, &key);

		if (!done || *done != end->passed)
			return pass(end, len);
	}
	if (bpf_sk_redirect_hash(skb, &loom_splice_socks, &end->peer, 0) == SK_PASS) {
		end->state = END_KERNEL;
		__sync_fetch_and_add(&end->bytes, len);
		__sync_fetch_and_add(&end->segments, 1);
		loom_stat_add(STAT_SKB_REDIRECTS, 1);
		loom_stat_add(STAT_SKB_BYTES, len);
		return SK_PASS;
	}
	if (end->state != END_KERNEL) {
		/* The peer is not in the map (yet): this direction stays with the process, in order. */
		end->state = END_PROCESS;
		return pass(end, len);
	}
	loom_stat_add(STAT_SKB_DROPPED, 1);
	return SK_DROP;
}
