// SPDX-License-Identifier: GPL-2.0
// wan_steer.bpf.c - the namespace testbed's stand-in for a NIC's RSS (scripts/testbed.sh
// --queues N): a tc ingress program on the WAN router's veths that records, as the receive
// queue of every UDP datagram, its source port mod N. The router forwards it on that TX queue
// (the kernel picks a forwarded packet's TX queue from its recorded receive queue when XPS is
// not set), and a veth delivers it to the same RX queue of the peer gateway's WAN port. So the
// lanes of a tunnel (outer source ports udp_port + k) reach queue (udp_port + k) mod N at the
// peer, deterministically, where a NIC's RSS would hash them. Other frames are left alone.
//
// Built by testbed.sh with: clang -O2 -target bpf -DQUEUES=N -c wan_steer.bpf.c
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef QUEUES
#define QUEUES 2
#endif

/* The receive queue of UDP datagrams: source port mod QUEUES, stored + 1 (skb_record_rx_queue). */
SEC("tc")
int steer(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct udphdr *udp;

    if ((void *)(eth + 1) > end)
        return TC_ACT_OK;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP)
            return TC_ACT_OK;
        udp = (void *)ip + ip->ihl * 4;
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
            return TC_ACT_OK;
        udp = (void *)(ip6 + 1);
    } else {
        return TC_ACT_OK;
    }
    if ((void *)(udp + 1) > end)
        return TC_ACT_OK;
    skb->queue_mapping = bpf_ntohs(udp->source) % QUEUES + 1;
    return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
