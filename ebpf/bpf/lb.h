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

struct lb_value {
	__u32 svc_id;           /* affinity is per service port */
	__u32 backend_id;       /* slots > 0 */
	__u16 count;            /* slot 0: how many backend slots */
	__u16 flags;            /* slot 0: LB_F_* */
	__u32 affinity_timeout; /* slot 0: seconds */
};

struct lb_backend {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
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
	__u32 backend_id;
	__u32 pad;
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
	__u32 svc_id;     /* forward entries: the flow holds while the service keeps */
	__u32 backend_id; /* this backend */
	__u32 pad;
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
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN_BY_NAME;
} lb_backends SEC(".maps");

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

/* Which backends each service port has, so that an affinity is dropped with its backend. */
struct svc_backend_key {
	__u32 svc_id;
	__u32 backend_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct svc_backend_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN_BY_NAME;
} lb_svc_backends SEC(".maps");

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

/* Picks a backend for a frontend: the client's previous one while its affinity holds,
 * otherwise a random slot. */
static __always_inline struct lb_backend *lb_pick(__u32 addr, __u16 port, __u8 proto, __u8 scope,
						  struct lb_value *svc, __u64 client, __u32 from_tc,
						  __u32 *backend_id)
{
	struct affinity_key akey = {.client = client, .svc_id = svc->svc_id, .from_tc = from_tc};
	__u64 now = bpf_ktime_get_ns();
	struct lb_backend *backend;

	if (svc->flags & LB_F_AFFINITY) {
		struct affinity_value *aff = bpf_map_lookup_elem(&lb_affinity, &akey);
		if (aff && now - aff->last_used_ns <= (__u64)svc->affinity_timeout * 1000000000ULL) {
			backend = bpf_map_lookup_elem(&lb_backends, &aff->backend_id);
			/* Only while the backend is still one of this service port's. */
			struct svc_backend_key member = {.svc_id = svc->svc_id, .backend_id = aff->backend_id};
			if (backend && bpf_map_lookup_elem(&lb_svc_backends, &member)) {
				aff->last_used_ns = now;
				*backend_id = aff->backend_id;
				return backend;
			}
		}
	}

	struct lb_key key = {.addr = addr, .port = port, .proto = proto, .scope = scope,
			     .slot = (bpf_get_prandom_u32() % svc->count) + 1};
	struct lb_value *slot = bpf_map_lookup_elem(&lb_services, &key);
	if (!slot)
		return 0;
	backend = bpf_map_lookup_elem(&lb_backends, &slot->backend_id);
	if (!backend)
		return 0;
	*backend_id = slot->backend_id;
	if (svc->flags & LB_F_AFFINITY) {
		struct affinity_value aff = {.last_used_ns = now, .backend_id = slot->backend_id};
		bpf_map_update_elem(&lb_affinity, &akey, &aff, BPF_ANY);
	}
	return backend;
}

#endif
