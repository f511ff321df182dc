// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * socket_redirect: TCP hops between two sockets on this host skip the TCP/IP stack.
 *
 * loom_sockops (sock_ops, attached to a cgroup v2 through a bpf_link) adds an established socket to
 * loom_socks (a SOCKHASH keyed by its four-tuple) when both its ends are on this host and it is one
 * end of a connection to a Loom listener (loom_listeners), or one end of a connection Loom itself
 * opened to one of its upstream endpoints (loom_upstreams). loom_skmsg (sk_msg, attached to
 * loom_socks) then moves each sendmsg of such a socket straight into the receive queue of its peer
 * (the socket with the reversed key) with bpf_msg_redirect_hash; a peer not in the map (another
 * host, closed) leaves the message on the normal path.
 *
 * Which outbound sockets are Loom's: loom_connect4/6 (cgroup/connect4, connect6) remember the
 * cookie of each socket the Loom process (loom_config.tgid in the pid namespace loom_config names)
 * connects to an upstream endpoint; loom_sockops adds it when it is established and remembers its
 * reversed key in loom_peers, so the upstream's accepted socket is added too. Built with
 * -DLOOM_COMPAT (redirect_compat.bpf.o, for kernels whose cgroup/connect programs may not call
 * bpf_get_ns_current_pid_tgid, before 6.10), an outbound socket is matched by its upstream
 * endpoint alone: another local program's connection to that endpoint is redirected too.
 *
 * Other programs' sockets are never added: a socket is added only when it is an end of a
 * connection with a Loom listener or a Loom upstream connection, and only in Loom's network
 * namespace (loom_config.netns; not checked in the compat build).
 */
#include "loom.h"

enum {
	STAT_SOCKETS = 0,       /* sockets added to loom_socks */
	STAT_SOCKET_ERRORS = 1, /* bpf_sock_hash_update failures (map full, socket busy) */
	STAT_MSG_REDIRECTS = 2, /* messages moved to the peer's receive queue */
	STAT_MSG_BYTES = 3,     /* their bytes */
	STAT_MSG_PASSED = 4,    /* messages left on the TCP path (peer not in the map) */
};

struct loom_config {
	__u64 pidns_dev; /* device and inode of Loom's pid namespace (/proc/self/ns/pid) */
	__u64 pidns_ino;
	__u64 netns;     /* Loom's network namespace cookie; 0 = not checked */
	__u32 tgid;      /* Loom's process id in that namespace; 0 = Loom's sockets not tracked */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct loom_config);
} loom_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct loom_sock_key);
	__type(value, __u64);
} loom_socks SEC(".maps");

/* Loom's listening addresses (the all-zero address = every address, for "0.0.0.0" and "::"). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct loom_addr_key);
	__type(value, __u32);
} loom_listeners SEC(".maps");

/* Loom's upstream endpoints (resolved addresses; the all-zero address = any local address). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct loom_addr_key);
	__type(value, __u32);
} loom_upstreams SEC(".maps");

/* This host's addresses besides loopback (loopback, 127.0.0.0/8 and ::1, is always local). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32[4]);
	__type(value, __u32);
} loom_local_ips SEC(".maps");

#ifndef LOOM_COMPAT
/* Cookies of sockets Loom is connecting to an upstream endpoint (until they are established). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} loom_connecting SEC(".maps");
#endif

/* Keys of upstream-side sockets whose Loom end is already in loom_socks (until they are accepted). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct loom_sock_key);
	__type(value, __u32);
} loom_peers SEC(".maps");

#ifndef LOOM_COMPAT
static __always_inline struct loom_config *config(void)
{
	__u32 k = 0;
	return bpf_map_lookup_elem(&loom_config, &k);
}
#endif

static __always_inline int is_local(const __u32 ip[4])
{
	if (ip[0] == 0 && ip[1] == 0) {
		if (ip[2] == bpf_htonl(0xffff) && (bpf_ntohl(ip[3]) >> 24) == 127)
			return 1;
		if (ip[2] == 0 && ip[3] == bpf_htonl(1))
			return 1;
	}
	return bpf_map_lookup_elem(&loom_local_ips, ip) != NULL;
}

/* Whether (ip, port) is in `map`: exactly, or through the wildcard entry of its family. */
static __always_inline int has_addr(void *map, const __u32 ip[4], __u32 port)
{
	struct loom_addr_key k = {};
	int mapped = ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff);

	k.port = port;
#pragma unroll
	for (int i = 0; i < 4; i++)
		k.ip[i] = ip[i];
	if (bpf_map_lookup_elem(map, &k))
		return 1;
	k.ip[0] = 0;
	k.ip[1] = 0;
	k.ip[3] = 0;
	k.ip[2] = mapped ? bpf_htonl(0xffff) : 0; /* 0.0.0.0 for IPv4 */
	if (bpf_map_lookup_elem(map, &k))
		return 1;
	k.ip[2] = 0; /* "::" also takes IPv4 (dual stack) */
	return bpf_map_lookup_elem(map, &k) != NULL;
}

/* Whether this established outbound socket is one Loom opened to an upstream endpoint. */
static __always_inline int loom_upstream_conn(struct bpf_sock_ops *skops, const struct loom_sock_key *key)
{
#ifdef LOOM_COMPAT
	return has_addr(&loom_upstreams, key->remote_ip, key->remote_port);
#else
	__u64 cookie = bpf_get_socket_cookie(skops);

	if (!bpf_map_lookup_elem(&loom_connecting, &cookie))
		return 0;
	bpf_map_delete_elem(&loom_connecting, &cookie);
	return 1;
#endif
}

SEC("sockops")
int loom_sockops(struct bpf_sock_ops *skops)
{
	struct loom_sock_key key = {};
	__u32 op = skops->op;
	__u32 one = 1;
	int add = 0;

	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (!LOOM_KEY_FROM(skops, &key))
		return 1;
#ifndef LOOM_COMPAT
	struct loom_config *cfg = config();
	if (cfg && cfg->netns != 0 && bpf_get_netns_cookie(skops) != cfg->netns)
		return 1;
#endif
	if (!is_local(key.local_ip) || !is_local(key.remote_ip))
		return 1;
	if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		/* Accepted: by a Loom listener, or by an upstream for a connection Loom opened. */
		if (has_addr(&loom_listeners, key.local_ip, key.local_port)) {
			add = 1;
		} else if (bpf_map_lookup_elem(&loom_peers, &key)) {
			bpf_map_delete_elem(&loom_peers, &key);
			add = 1;
		}
	} else {
		/* Connected: a client of a Loom listener, or Loom to an upstream endpoint. */
		if (has_addr(&loom_listeners, key.remote_ip, key.remote_port)) {
			add = 1;
		} else if (loom_upstream_conn(skops, &key)) {
			struct loom_sock_key peer = {};

			loom_reverse(&key, &peer);
			bpf_map_update_elem(&loom_peers, &peer, &one, BPF_ANY);
			add = 1;
		}
	}
	if (!add)
		return 1;
	if (bpf_sock_hash_update(skops, &loom_socks, &key, BPF_ANY) == 0)
		loom_stat_add(STAT_SOCKETS, 1);
	else
		loom_stat_add(STAT_SOCKET_ERRORS, 1);
	return 1;
}

SEC("sk_msg")
int loom_skmsg(struct sk_msg_md *msg)
{
	struct loom_sock_key key = {};
	struct loom_sock_key peer = {};
	__u64 size = msg->size;

	if (!LOOM_KEY_FROM(msg, &key))
		return SK_PASS;
	loom_reverse(&key, &peer);
	if (bpf_msg_redirect_hash(msg, &loom_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
		loom_stat_add(STAT_MSG_REDIRECTS, 1);
		loom_stat_add(STAT_MSG_BYTES, size);
	} else {
		loom_stat_add(STAT_MSG_PASSED, 1);
	}
	return SK_PASS;
}

#ifndef LOOM_COMPAT
static __always_inline void remember_connect(struct bpf_sock_addr *ctx, const __u32 ip[4])
{
	struct loom_config *cfg = config();
	struct bpf_pidns_info ns = {};
	__u32 one = 1;
	__u64 cookie;

	if (!cfg || cfg->tgid == 0 || ctx->type != LOOM_SOCK_STREAM)
		return;
	if (bpf_get_ns_current_pid_tgid(cfg->pidns_dev, cfg->pidns_ino, &ns, sizeof(ns)) != 0)
		return;
	if (ns.tgid != cfg->tgid)
		return;
	if (!has_addr(&loom_upstreams, ip, bpf_ntohs((__u16)ctx->user_port)))
		return;
	cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&loom_connecting, &cookie, &one, BPF_ANY);
}

/* Both only observe: they always let the connect go on (1). */
SEC("cgroup/connect4")
int loom_connect4(struct bpf_sock_addr *ctx)
{
	__u32 ip[4];

	loom_mapped4(ip, ctx->user_ip4);
	remember_connect(ctx, ip);
	return 1;
}

SEC("cgroup/connect6")
int loom_connect6(struct bpf_sock_addr *ctx)
{
	__u32 ip[4];

	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	remember_connect(ctx, ip);
	return 1;
}
#endif
