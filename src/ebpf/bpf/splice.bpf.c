// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * splice_tunnels: the two sockets of an established tunnel (client and upstream, both plain TCP)
 * are put in loom_splice_socks by Loom itself, each with its peer's key in loom_splice_ends.
 * loom_splice_verdict (sk_skb stream verdict, attached to loom_splice_socks) sends every segment a
 * spliced socket receives out of its peer (bpf_sk_redirect_hash to egress), so the tunnel's bytes
 * no longer reach the process; it counts them per end, which is how Loom knows how many bytes it
 * must wait for before it forwards a half-close, and what to log.
 */
#include "loom.h"

enum {
	STAT_SKB_REDIRECTS = 0, /* segments sent on out of the peer */
	STAT_SKB_BYTES = 1,     /* their bytes */
	STAT_SKB_DROPPED = 2,   /* segments whose peer had left the map (the tunnel is closing) */
	STAT_SKB_PASSED = 3,    /* segments of a socket with no splice entry (left to the process) */
};

struct loom_splice_end {
	struct loom_sock_key peer; /* where this socket's bytes go */
	__u64 bytes;               /* bytes sent on so far */
	__u64 segments;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct loom_sock_key);
	__type(value, __u64);
} loom_splice_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct loom_sock_key);
	__type(value, struct loom_splice_end);
} loom_splice_ends SEC(".maps");

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
		return SK_PASS;
	}
	if (bpf_sk_redirect_hash(skb, &loom_splice_socks, &end->peer, 0) == SK_PASS) {
		__sync_fetch_and_add(&end->bytes, len);
		__sync_fetch_and_add(&end->segments, 1);
		loom_stat_add(STAT_SKB_REDIRECTS, 1);
		loom_stat_add(STAT_SKB_BYTES, len);
		return SK_PASS;
	}
	loom_stat_add(STAT_SKB_DROPPED, 1);
	return SK_DROP;
}
