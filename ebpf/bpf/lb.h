/* Map layouts shared by the socket-layer and TC programs. kube-lb mirrors every struct here
 * in src/maps.rs; the two must change together. All addresses and ports are in network byte
 * order, as the kernel hands them to the programs. */
#ifndef FERROKUBE_LB_H
#define FERROKUBE_LB_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* A frontend is looked up by (addr, port, proto, scope) with slot 0; its backends sit in
 * slots 1..count of the same key. Scope SOCK is what the socket programs translate (cluster
 * IPs, external and load-balancer IPs reached from inside); scope EXT is what TC translates
 * for traffic arriving from outside (node ports under addr 0, external and ingress IPs). */
#define LB_SCOPE_SOCK 0
#define LB_SCOPE_EXT 1

#define LB_F_AFFINITY 0x1 /* sessionAffinity: ClientIP */
#define LB_F_SNAT 0x2     /* externalTrafficPolicy: Cluster: masquerade to the node */
#define LB_F_DROP 0x4     /* without backends, drop rather than refuse */

struct lb_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 scope;
	__u16 slot;
	__u16 pad;
};

/* Slot 0 (the head) says how many slots follow and how to pick among them; slot n holds
 * the n-th backend's address and port (the protocol is the frontend's). */
struct lb_value {
	__u32 svc_id;           /* head: affinity is per service port */
	__u32 addr;             /* slots */
	__u16 port;             /* slots */
	__u16 count;            /* head */
	__u16 flags;            /* head: LB_F_* */
	__u16 pad;
	__u32 affinity_timeout; /* head: seconds */
};

/* What a socket connected to a backend must report as its peer: the frontend it asked for. */
struct sock_rev_key {
	__u64 cookie;
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct sock_rev_value {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

/* Session affinity: client is the network namespace cookie for the socket programs (one per
 * pod) and the source address for TC. */
struct affinity_key {
	__u64 client;
	__u32 svc_id;
	__u32 from_tc;
};

struct affinity_value {
	__u64 last_used_ns;
	__u32 addr;
	__u16 port;
	__u16 slot;
};

/* Connection tracking for TC translations. The forward entry is keyed by the packet as the
 * client sent it and says where it goes; the reply entry is keyed by the answer as it comes
 * back and says how to restore what the client expects. */
#define CT_FORWARD 0
#define CT_REPLY 1

struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct ct_value {
	__u32 new_saddr;
	__u32 new_daddr;
	__u16 new_sport;
	__u16 new_dport;
	__u32 faddr; /* forward entries: the flow holds while the frontend's slot */
	__u16 slot;  /* still holds its backend */
	__u16 pad;
	__u32 pad2;
	__u64 last_seen_ns;
};

#define PIN_BY_NAME __uint(pinning, LIBBPF_PIN_BY_NAME)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_key);
	__type(value, struct lb_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN_BY_NAME;
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sock_rev_key);
	__type(value, struct sock_rev_value);
	PIN_BY_NAME;
} lb_sock_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
	PIN_BY_NAME;
} lb_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	PIN_BY_NAME;
} lb_ct SEC(".maps");

/* The node's own addresses: a packet to one of them may be for a node port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
	PIN_BY_NAME;
} lb_node_addrs SEC(".maps");

static __always_inline struct lb_value *lb_frontend(__u32 addr, __u16 port, __u8 proto, __u8 scope)
{
	struct lb_key key = {.addr = addr, .port = port, .proto = proto, .scope = scope};
	return bpf_map_lookup_elem(&lb_services, &key);
}

/* Picks a backend for a frontend: the client's previous one while its affinity holds and
 * its slot still holds it, otherwise a random slot. Returns the slot's value. */
static __always_inline struct lb_value *lb_pick(__u32 addr, __u16 port, __u8 proto, __u8 scope,
						struct lb_value *svc, __u64 client, __u32 from_tc,
						__u16 *slot)
{
	struct affinity_key akey = {.client = client, .svc_id = svc->svc_id, .from_tc = from_tc};
	struct lb_key key = {.addr = addr, .port = port, .proto = proto, .scope = scope};
	__u64 now = bpf_ktime_get_ns();
	struct lb_value *backend;

	if (svc->flags & LB_F_AFFINITY) {
		struct affinity_value *aff = bpf_map_lookup_elem(&lb_affinity, &akey);
		if (aff && aff->slot >= 1 && aff->slot <= svc->count &&
		    now - aff->last_used_ns <= (__u64)svc->affinity_timeout * 1000000000ULL) {
			key.slot = aff->slot;
			backend = bpf_map_lookup_elem(&lb_services, &key);
			if (backend && backend->addr == aff->addr && backend->port == aff->port) {
				aff->last_used_ns = now;
				*slot = key.slot;
				return backend;
			}
		}
	}

	key.slot = (bpf_get_prandom_u32() % svc->count) + 1;
	backend = bpf_map_lookup_elem(&lb_services, &key);
	if (!backend)
		return 0;
	*slot = key.slot;
	if (svc->flags & LB_F_AFFINITY) {
		struct affinity_value aff = {.last_used_ns = now, .addr = backend->addr,
					     .port = backend->port, .slot = key.slot};
		bpf_map_update_elem(&lb_affinity, &akey, &aff, BPF_ANY);
	}
	return backend;
}

#endif
