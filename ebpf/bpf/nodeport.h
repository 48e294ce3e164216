/* Node ports, external IPs and load-balancer ingress IPs for traffic that arrives at the
 * node: attached at TC ingress on every node interface (the pod bridge too). A new flow is
 * translated to a backend, masqueraded to the node for externalTrafficPolicy: Cluster, and
 * recorded in lb_ct in both directions; the answer, arriving on whichever interface, is
 * translated back. Translated packets are forwarded from here with a FIB lookup: the kernel's
 * own forwarding would refuse a packet whose source is a local address. */
#ifndef FERROKUBE_NODEPORT_H
#define FERROKUBE_NODEPORT_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include "lb.h"

#define AF_INET 2
#define TCP_CSUM_OFF 16
#define UDP_CSUM_OFF 6
#define TCP_FLAGS_OFF 13
#define TCP_SYN 0x02
#define TCP_ACK 0x10
/* A reply entry idle this long may be reused for another masqueraded flow. */
#define CT_STALE_NS (300ULL * 1000000000ULL)
#define SNAT_PORT_TRIES 8

struct pkt {
	__u32 l3off;
	__u32 l4off;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 ttl;
	__u16 udp_csum;
};

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return 0;
	/* Only first fragments carry ports; later ones are left to the stack. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	p->l3off = ETH_HLEN;
	p->l4off = ETH_HLEN + ip->ihl * 4;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, p->l4off, ports, sizeof(ports)))
		return 0;
	p->sport = ports[0];
	p->dport = ports[1];
	p->udp_csum = 0;
	if (p->proto == IPPROTO_UDP &&
	    bpf_skb_load_bytes(skb, p->l4off + UDP_CSUM_OFF, &p->udp_csum, 2))
		return 0;
	return 1;
}

static __always_inline int is_syn(struct __sk_buff *skb, struct pkt *p)
{
	__u8 flags = 0;
	if (p->proto != IPPROTO_TCP || bpf_skb_load_bytes(skb, p->l4off + TCP_FLAGS_OFF, &flags, 1))
		return 0;
	return (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

static __always_inline int rewrite_addr(struct __sk_buff *skb, struct pkt *p, __u32 off,
					__u32 old, __u32 new)
{
	if (old == new)
		return 0;
	__u32 csum_off = p->l4off + (p->proto == IPPROTO_TCP ? TCP_CSUM_OFF : UDP_CSUM_OFF);
	/* A UDP datagram without a checksum keeps none. */
	if (p->proto == IPPROTO_TCP || p->udp_csum)
		if (bpf_l4_csum_replace(skb, csum_off, old, new,
					BPF_F_PSEUDO_HDR | sizeof(new) |
						(p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0)))
			return -1;
	if (bpf_l3_csum_replace(skb, p->l3off + offsetof(struct iphdr, check), old, new,
				sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, p->l3off + off, &new, sizeof(new), 0);
}

static __always_inline int rewrite_port(struct __sk_buff *skb, struct pkt *p, __u32 off,
					__u16 old, __u16 new)
{
	if (old == new)
		return 0;
	__u32 csum_off = p->l4off + (p->proto == IPPROTO_TCP ? TCP_CSUM_OFF : UDP_CSUM_OFF);
	if (p->proto == IPPROTO_TCP || p->udp_csum)
		if (bpf_l4_csum_replace(skb, csum_off, old, new,
					sizeof(new) |
						(p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0)))
			return -1;
	return bpf_skb_store_bytes(skb, p->l4off + off, &new, sizeof(new), 0);
}

static __always_inline int rewrite(struct __sk_buff *skb, struct pkt *p, __u32 saddr, __u16 sport,
				   __u32 daddr, __u16 dport)
{
	if (rewrite_addr(skb, p, offsetof(struct iphdr, saddr), p->saddr, saddr) ||
	    rewrite_addr(skb, p, offsetof(struct iphdr, daddr), p->daddr, daddr) ||
	    rewrite_port(skb, p, 0, p->sport, sport) || rewrite_port(skb, p, 2, p->dport, dport))
		return -1;
	return 0;
}

/* Routes the packet to its new destination and sends it out of the right interface. */
static __always_inline int forward(struct __sk_buff *skb, struct pkt *p,
				   struct bpf_fib_lookup *fib)
{
	/* Forwarding costs a hop; an expiring packet goes to the stack for its ICMP. */
	__u16 old_word, new_word;
	if (bpf_skb_load_bytes(skb, p->l3off + offsetof(struct iphdr, ttl), &old_word, 2))
		return TC_ACT_SHOT;
	__u8 *bytes = (__u8 *)&new_word;
	new_word = old_word;
	bytes[0] = p->ttl - 1;
	bpf_l3_csum_replace(skb, p->l3off + offsetof(struct iphdr, check), old_word, new_word, 2);
	bpf_skb_store_bytes(skb, p->l3off + offsetof(struct iphdr, ttl), &new_word, 2, 0);

	if (fib->family == 0) {
		struct bpf_redir_neigh nh = {.nh_family = AF_INET, .ipv4_nh = fib->ipv4_dst};
		return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
	}
	bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib->dmac, ETH_ALEN, 0);
	bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib->smac, ETH_ALEN, 0);
	return bpf_redirect(fib->ifindex, 0);
}

/* Looks up the route to daddr. A resolved neighbour leaves fib ready for bpf_redirect; an
 * unresolved one is marked with family 0 for bpf_redirect_neigh. */
static __always_inline int route(struct __sk_buff *skb, struct pkt *p, __u32 saddr, __u32 daddr,
				 struct bpf_fib_lookup *fib, __u32 flags)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = p->proto;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	fib->ifindex = skb->ingress_ifindex;
	/* A forwarding lookup from the interface the packet came in on (an output lookup would
	 * be bound to that interface); it needs forwarding on, which kube-lb turns on. */
	int rc = bpf_fib_lookup(skb, fib, sizeof(*fib), flags);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		fib->family = 0;
		return 0;
	}
	return -1;
}

static __always_inline int translate(struct __sk_buff *skb, struct pkt *p, struct ct_value *ct)
{
	struct bpf_fib_lookup fib;
	if (route(skb, p, ct->new_saddr, ct->new_daddr, &fib, 0))
		return TC_ACT_OK;
	if (rewrite(skb, p, ct->new_saddr, ct->new_sport, ct->new_daddr, ct->new_dport))
		return TC_ACT_SHOT;
	return forward(skb, p, &fib);
}

/* Refuses a flow the way upstream's REJECT rule does: an ICMP port unreachable back to the
 * sender, quoting its IP header and the first 8 bytes after it. The packet is rewritten in
 * place into the answer and sent back out of the interface it came in on. */
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define IPPROTO_ICMP 1
#define REJECT_QUOTE (sizeof(struct iphdr) + 8)
#define REJECT_LEN (ETH_HLEN + sizeof(struct iphdr) + 8 + REJECT_QUOTE)

static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline int reject(struct __sk_buff *skb, struct pkt *p)
{
	struct ethhdr eth;
	__u8 quote[REJECT_QUOTE];

	/* Options would shift the quote; such packets are only dropped. */
	if (p->l4off != ETH_HLEN + sizeof(struct iphdr))
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, quote, sizeof(quote)))
		return TC_ACT_SHOT;
	if (bpf_skb_change_tail(skb, REJECT_LEN, 0))
		return TC_ACT_SHOT;

	/* Two bytes ahead of the Ethernet header put the IP header on a 4-byte boundary, as
	 * bpf_csum_diff wants it. */
	__u32 buf[(2 + REJECT_LEN + 3) / 4];
	__builtin_memset(buf, 0, sizeof(buf));
	__u8 *pkt = (__u8 *)buf + 2;
	struct ethhdr *oeth = (void *)pkt;
	struct iphdr *ip = (void *)(pkt + ETH_HLEN);
	__u8 *icmp = pkt + ETH_HLEN + sizeof(struct iphdr);
	__builtin_memcpy(oeth->h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(oeth->h_source, eth.h_dest, ETH_ALEN);
	oeth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->tot_len = bpf_htons(REJECT_LEN - ETH_HLEN);
	ip->saddr = p->daddr;
	ip->daddr = p->saddr;
	icmp[0] = ICMP_DEST_UNREACH;
	icmp[1] = ICMP_PORT_UNREACH;
	__builtin_memcpy(icmp + 8, quote, sizeof(quote));
	ip->check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
	__u16 icmp_sum = csum_fold(bpf_csum_diff(0, 0, (__be32 *)icmp, 8 + REJECT_QUOTE, 0));
	__builtin_memcpy(icmp + 2, &icmp_sum, 2);
	if (bpf_skb_store_bytes(skb, 0, pkt, REJECT_LEN,
				BPF_F_INVALIDATE_HASH | BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

static __always_inline int new_flow(struct __sk_buff *skb, struct pkt *p, struct ct_key *fkey)
{
	__u32 faddr = p->daddr;
	struct lb_value *svc = 0;

	if (bpf_map_lookup_elem(&lb_node_addrs, &p->daddr)) {
		faddr = 0;
		svc = lb_frontend(0, p->dport, p->proto, LB_SCOPE_EXT);
	}
	if (!svc) {
		faddr = p->daddr;
		svc = lb_frontend(faddr, p->dport, p->proto, LB_SCOPE_EXT);
	}
	if (!svc)
		return TC_ACT_OK;
	/* No endpoints: refused, as upstream does. Endpoints, but none on this node for
	 * externalTrafficPolicy: Local: dropped, as upstream does. */
	if (svc->count == 0)
		return (svc->flags & LB_F_DROP) ? TC_ACT_SHOT : reject(skb, p);

	__u16 slot = 0;
	struct lb_value *backend =
		lb_pick(faddr, p->dport, p->proto, LB_SCOPE_EXT, svc, p->saddr, 1, &slot);
	if (!backend)
		return TC_ACT_SHOT;

	__u32 flags = svc->flags;
	__u32 baddr = backend->addr;
	__u16 bport = backend->port;
	struct bpf_fib_lookup fib;
	if (route(skb, p, p->saddr, baddr, &fib, (flags & LB_F_SNAT) ? BPF_FIB_LOOKUP_SRC : 0))
		return TC_ACT_SHOT;

	__u32 saddr = p->saddr;
	__u16 sport = p->sport;
	__u64 now = bpf_ktime_get_ns();
	struct ct_key rkey = {.saddr = baddr, .sport = bport, .proto = p->proto, .dir = CT_REPLY};
	if (flags & LB_F_SNAT) {
		saddr = fib.ipv4_src;
		rkey.daddr = saddr;
		/* Keep the client's port unless another masqueraded flow to this backend owns
		 * it, then try random ones. */
		int found = 0;
		for (int i = 0; i < SNAT_PORT_TRIES; i++) {
			rkey.dport = sport;
			struct ct_value *other = bpf_map_lookup_elem(&lb_ct, &rkey);
			if (!other || (other->new_daddr == p->saddr && other->new_dport == p->sport) ||
			    now - other->last_seen_ns > CT_STALE_NS) {
				found = 1;
				break;
			}
			sport = bpf_htons(32768 + bpf_get_prandom_u32() % 28232);
		}
		if (!found)
			return TC_ACT_SHOT;
	} else {
		rkey.daddr = saddr;
		rkey.dport = sport;
	}

	struct ct_value fwd = {.new_saddr = saddr, .new_sport = sport, .new_daddr = baddr,
			       .new_dport = bport, .faddr = faddr, .slot = slot,
			       .last_seen_ns = now};
	struct ct_value rev = {.new_saddr = p->daddr, .new_sport = p->dport,
			       .new_daddr = p->saddr, .new_dport = p->sport, .last_seen_ns = now};
	if (bpf_map_update_elem(&lb_ct, fkey, &fwd, BPF_ANY) ||
	    bpf_map_update_elem(&lb_ct, &rkey, &rev, BPF_ANY))
		return TC_ACT_SHOT;

	if (rewrite(skb, p, saddr, sport, baddr, bport))
		return TC_ACT_SHOT;
	return forward(skb, p, &fib);
}

SEC("classifier")
int kube_lb_ingress(struct __sk_buff *skb)
{
	struct pkt p;
	if (!parse(skb, &p))
		return TC_ACT_OK;
	__u64 now = bpf_ktime_get_ns();

	struct ct_key rkey = {.saddr = p.saddr, .daddr = p.daddr, .sport = p.sport,
			      .dport = p.dport, .proto = p.proto, .dir = CT_REPLY};
	struct ct_value *ct = bpf_map_lookup_elem(&lb_ct, &rkey);
	if (ct) {
		ct->last_seen_ns = now;
		return translate(skb, &p, ct);
	}

	struct ct_key fkey = {.saddr = p.saddr, .daddr = p.daddr, .sport = p.sport,
			      .dport = p.dport, .proto = p.proto, .dir = CT_FORWARD};
	ct = bpf_map_lookup_elem(&lb_ct, &fkey);
	if (ct && !is_syn(skb, &p)) {
		/* The flow keeps its backend while the frontend does. */
		struct lb_key bkey = {.addr = ct->faddr, .port = p.dport, .proto = p.proto,
				      .scope = LB_SCOPE_EXT, .slot = ct->slot};
		struct lb_value *backend = bpf_map_lookup_elem(&lb_services, &bkey);
		if (backend && backend->addr == ct->new_daddr && backend->port == ct->new_dport) {
			ct->last_seen_ns = now;
			return translate(skb, &p, ct);
		}
	}
	return new_flow(skb, &p, &fkey);
}

#endif
