/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What Loom's BPF programs share: the socket key and how each program type builds it, the address
 * tests, and the statistics array. Built by scripts/build_bpf.ts (clang -O2 -g -target bpf) against
 * the kernel's UAPI headers (linux-libc-dev) and libbpf's bpf_helpers.h (libbpf-dev): no vmlinux.h,
 * no CO-RE, so one object loads on every kernel that has the program types.
 */
#ifndef LOOM_BPF_H
#define LOOM_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LOOM_AF_INET 2
#define LOOM_AF_INET6 10
#define LOOM_SOCK_STREAM 1

/*
 * A TCP socket by its four-tuple as that socket sees it (local first). IPv4 addresses are kept
 * IPv4-mapped (::ffff:a.b.c.d), so a v4 socket and a dual-stack v6 socket key alike; addresses in
 * network order, ports in host order. The peer of a socket on this host has the reversed key.
 */
struct loom_sock_key {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
};

/* An address and port (a listener, an upstream endpoint); an all-zero address is a wildcard. */
struct loom_addr_key {
	__u32 ip[4];
	__u32 port;
};

/* One __u64 per statistic, incremented with atomic adds; userspace reads the array whole. */
#define LOOM_STATS_MAX 8
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOOM_STATS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} loom_stats SEC(".maps");

static __always_inline void loom_stat_add(__u32 index, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&loom_stats, &index);
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void loom_mapped4(__u32 ip[4], __u32 ip4)
{
	ip[0] = 0;
	ip[1] = 0;
	ip[2] = bpf_htonl(0xffff);
	ip[3] = ip4;
}

/*
 * Fills `key` from a context with the bpf_sock_ops / sk_msg_md / __sk_buff socket fields (the
 * same names in all three). Every field is read unconditionally and pinned with barrier_var, so
 * each read stays a direct load from the context (the verifier refuses a load through a context
 * pointer the compiler computed to merge the IPv4 and IPv6 branches). remote_port is the
 * network-order port shifted into the upper half on little-endian kernels, which bpf_ntohl turns
 * into the host-order port. Evaluates to 0 for a socket that is neither IPv4 nor IPv6.
 */
#define LOOM_KEY_FROM(ctx, key)                                                                    \
	({                                                                                         \
		__u32 f_ = (ctx)->family, l4_ = (ctx)->local_ip4, r4_ = (ctx)->remote_ip4;        \
		__u32 l0_ = (ctx)->local_ip6[0], l1_ = (ctx)->local_ip6[1];                        \
		__u32 l2_ = (ctx)->local_ip6[2], l3_ = (ctx)->local_ip6[3];                        \
		__u32 r0_ = (ctx)->remote_ip6[0], r1_ = (ctx)->remote_ip6[1];                      \
		__u32 r2_ = (ctx)->remote_ip6[2], r3_ = (ctx)->remote_ip6[3];                      \
		__u32 lp_ = (ctx)->local_port, rp_ = (ctx)->remote_port;                           \
		barrier_var(f_);                                                                   \
		barrier_var(l4_);                                                                  \
		barrier_var(r4_);                                                                  \
		barrier_var(l0_);                                                                  \
		barrier_var(l1_);                                                                  \
		barrier_var(l2_);                                                                  \
		barrier_var(l3_);                                                                  \
		barrier_var(r0_);                                                                  \
		barrier_var(r1_);                                                                  \
		barrier_var(r2_);                                                                  \
		barrier_var(r3_);                                                                  \
		barrier_var(lp_);                                                                  \
		barrier_var(rp_);                                                                  \
		if (f_ == LOOM_AF_INET) {                                                          \
			loom_mapped4((key)->local_ip, l4_);                                        \
			loom_mapped4((key)->remote_ip, r4_);                                       \
		} else {                                                                           \
			(key)->local_ip[0] = l0_;                                                  \
			(key)->local_ip[1] = l1_;                                                  \
			(key)->local_ip[2] = l2_;                                                  \
			(key)->local_ip[3] = l3_;                                                  \
			(key)->remote_ip[0] = r0_;                                                 \
			(key)->remote_ip[1] = r1_;                                                 \
			(key)->remote_ip[2] = r2_;                                                 \
			(key)->remote_ip[3] = r3_;                                                 \
		}                                                                                  \
		(key)->local_port = lp_;                                                           \
		(key)->remote_port = bpf_ntohl(rp_);                                               \
		f_ == LOOM_AF_INET || f_ == LOOM_AF_INET6;                                         \
	})

static __always_inline void loom_reverse(const struct loom_sock_key *k, struct loom_sock_key *r)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		r->local_ip[i] = k->remote_ip[i];
		r->remote_ip[i] = k->local_ip[i];
	}
	r->local_port = k->remote_port;
	r->remote_port = k->local_port;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#endif
