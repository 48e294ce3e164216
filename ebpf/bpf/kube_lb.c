/* kube-lb's BPF object: the socket-layer programs and the TC programs share one set of maps. */
#include "sock.h"
#include "nodeport.h"

char _license[] SEC("license") = "GPL";
