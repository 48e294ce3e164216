/* ClusterIP at the socket layer: a connect() or an unconnected sendmsg() to a frontend is
 * pointed at a backend before any packet exists, so nothing is translated per packet. The
 * socket remembers the frontend, so getpeername() and recvmsg() report it back. */
#ifndef FERROKUBE_SOCK_H
#define FERROKUBE_SOCK_H

#include "lb.h"

#define ECONNREFUSED 111
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

static __always_inline int sock4_translate(struct bpf_sock_addr *ctx, __u8 proto)
{
	__u32 addr = ctx->user_ip4;
	__u16 port = (__u16)ctx->user_port;
	__u8 scope = LB_SCOPE_SOCK;
	struct lb_value *svc = lb_frontend(addr, port, proto, scope);

	/* The node's own address on a node port, as kube-proxy serves it to local clients. */
	if (!svc && bpf_map_lookup_elem(&lb_node_addrs, &addr)) {
		scope = LB_SCOPE_EXT;
		svc = lb_frontend(0, port, proto, scope);
		if (!svc)
			return 1;
		addr = 0;
	}
	if (!svc)
		return 1;
	if (svc->count == 0) {
		/* Upstream rejects a service without endpoints at once, with ICMP; here the
		 * caller gets the same ECONNREFUSED without a packet. */
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}

	__u16 slot = 0;
	struct lb_value *backend =
		lb_pick(addr, port, proto, scope, svc, bpf_get_netns_cookie(ctx), 0, &slot);
	if (!backend) {
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}

	struct sock_rev_key rkey = {.cookie = bpf_get_socket_cookie(ctx),
				    .addr = backend->addr,
				    .port = backend->port};
	struct sock_rev_value rval = {.addr = ctx->user_ip4, .port = port};
	bpf_map_update_elem(&lb_sock_rev, &rkey, &rval, BPF_ANY);

	ctx->user_ip4 = backend->addr;
	ctx->user_port = backend->port;
	return 1;
}

static __always_inline void sock4_restore(struct bpf_sock_addr *ctx)
{
	struct sock_rev_key rkey = {.cookie = bpf_get_socket_cookie(ctx),
				    .addr = ctx->user_ip4,
				    .port = (__u16)ctx->user_port};
	struct sock_rev_value *rval = bpf_map_lookup_elem(&lb_sock_rev, &rkey);
	if (rval) {
		ctx->user_ip4 = rval->addr;
		ctx->user_port = rval->port;
	}
}

SEC("cgroup/connect4")
int kube_lb_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	return sock4_translate(ctx, ctx->protocol);
}

SEC("cgroup/sendmsg4")
int kube_lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_translate(ctx, IPPROTO_UDP);
}

SEC("cgroup/recvmsg4")
int kube_lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	sock4_restore(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int kube_lb_getpeername4(struct bpf_sock_addr *ctx)
{
	sock4_restore(ctx);
	return 1;
}

#endif
