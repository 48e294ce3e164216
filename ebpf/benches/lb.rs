//! `hack/bench.sh lb`: a Service's ClusterIP through kube-lb's BPF programs against the same
//! server reached directly by its pod IP, and against kube-proxy's iptables mode, at 10, 1,000
//! and 10,000 Services; and how long 10,000 Services take to reach the maps against
//! `iptables-restore` of the same Services' rules.
//!
//! Topology, made for the run and removed after it: a "pod" network namespace holding the
//! server (pod IP 10.244.0.10, ports 8080-8082; a 64-byte request answered with the same 64
//! bytes, keep-alive) and client namespaces, each joined to it by a veth pair. Every client
//! is this binary run again as a separate process inside a client namespace:
//!
//! - (a) to the pod IP (its three ports in turn), from a clean client namespace;
//! - (b) to the Service's ClusterIP from the same namespace, as a member of a cgroup (v2) that
//!   kube-lb's socket programs are attached to, with N Services in the maps;
//! - (c) to the ClusterIP from another client namespace (a new one for each N), whose filter
//!   and nat tables hold what kube-proxy's iptables mode writes for the same N Services
//!   (written here following upstream's proxier, loaded with `iptables-restore` as kube-proxy
//!   does), the measured Service's rule last in KUBE-SERVICES.
//!
//! Each Service has one TCP port and 1-3 endpoints; the measured one has three, all served by
//! the server. Per path: connection setup (connect, one request and its reply, on a new
//! connection each time) and requests/s over keep-alive connections. Rounds interleave the
//! three paths, so that drift in the machine's speed falls on all of them alike.
//!
//! Map updates: `Tables::apply` of N Services into freshly loaded maps, against
//! `iptables-restore` of kube-proxy's rules for the same N Services into an empty namespace
//! (after kube-proxy's jump rules, which it writes once with `iptables -I`); the load into
//! (c)'s namespace is the first such sample.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_lb::maps::{LbKey, LbValue};
use kube_lb::model::{Backend, Frontend, Proto, Scope};
use kube_lb::node::{NodeOptions, NodeState};
use kube_lb::tables::{MapWriter, Tables};
use kube_lb::{datapath, node};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Per path and round: BATCHES x BATCH new connections, SLICES x SLICE keep-alive requests
/// on each connection, the paths taking turns.
const ROUNDS: usize = 6;
const BATCHES: usize = 10;
const BATCH: usize = 50;
const SLICES: usize = 4;
const SLICE: usize = 2_000;
/// New connections per client before any is timed.
const WARMUP: usize = 100;
const KEEPALIVE: usize = 8;
/// Map and iptables loads per size; the median counts. iptables-restore of 10,000 Services
/// takes the better part of a minute, so that size is loaded once.
const LOADS: usize = 3;
const IPTABLES_LOADS: [usize; 3] = [LOADS, LOADS, 1];
const MESSAGE: usize = 64;

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);
const POD_PORTS: [u16; 3] = [8080, 8081, 8082];
const SERVICE_PORT: u16 = 80;
/// The measured Service's ClusterIP, apart from the others' (10.96.0.1 on).
const MEASURED_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 10);
const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// kube-proxy's default masquerade bit 14.
const MASQ_MARK: &str = "0x4000";
/// Above this many endpoints kube-proxy leaves comments out of the endpoint rules.
const LARGE_CLUSTER_ENDPOINTS: usize = 1_000;

const CLIENT_ENV: &str = "FK_LB_BENCH_CLIENT";
const PREFIX: &str = "fk-lb-bench-";

// ---------------------------------------------------------------------------------------
// The Services

struct Service {
    /// `namespace/name`
    name: String,
    /// kube-proxy's ServicePortName string, `namespace/name:port`.
    port_name: String,
    cluster_ip: Ipv4Addr,
    backends: Vec<Backend>,
}

/// N Services: N-1 others (their endpoints exist nowhere; only their rules and map entries
/// matter), then the measured one, whose endpoints are the server's three ports. Each size's
/// set includes the smaller ones'.
fn services(n: usize) -> Vec<Service> {
    let mut out: Vec<Service> = (0..n - 1)
        .map(|i| {
            let backends = (0..1 + i % 3)
                .map(|j| Backend {
                    addr: Ipv4Addr::from(
                        u32::from(Ipv4Addr::new(10, 244, 128, 0)) + 1 + (3 * i + j) as u32,
                    ),
                    port: 8080,
                    proto: Proto::Tcp,
                })
                .collect();
            Service {
                name: format!("bench/svc-{i}"),
                port_name: format!("bench/svc-{i}:http"),
                cluster_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32),
                backends,
            }
        })
        .collect();
    out.push(Service {
        name: "bench/measured".into(),
        port_name: "bench/measured:http".into(),
        cluster_ip: MEASURED_IP,
        backends: POD_PORTS
            .iter()
            .map(|port| Backend {
                addr: POD_IP,
                port: *port,
                proto: Proto::Tcp,
            })
            .collect(),
    });
    out
}

/// What kube-lb's model makes of a ClusterIP Service with one port.
fn frontend(svc: &Service) -> Frontend {
    let mut backends = svc.backends.clone();
    backends.sort();
    Frontend {
        addr: svc.cluster_ip,
        port: SERVICE_PORT,
        proto: Proto::Tcp,
        scope: Scope::Sock,
        service_port: svc.port_name.clone(),
        affinity_timeout: None,
        snat: false,
        drop_when_empty: false,
        backends,
    }
}

// ---------------------------------------------------------------------------------------
// kube-proxy's iptables mode, as pkg/proxy/iptables/proxier.go lays it out

/// Upstream's portProtoHash: base32 of SHA-256, the first 16 characters.
fn chain_hash(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    // 16 characters of 5 bits are the first 10 bytes.
    let bits = digest.as_ref()[..10]
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    (0..16)
        .map(|i| ALPHABET[((bits >> (75 - 5 * i)) & 31) as usize] as char)
        .collect()
}

fn svc_chain(port_name: &str) -> String {
    format!("KUBE-SVC-{}", chain_hash(&format!("{port_name}tcp")))
}

fn sep_chain(port_name: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        chain_hash(&format!("{port_name}tcp{endpoint}"))
    )
}

/// The jump rules kube-proxy (and the kubelet, for KUBE-FIREWALL) insert with `iptables -I`
/// before kube-proxy's first iptables-restore, in the order they are inserted: table, chain,
/// the chain that jumps to it, extra matches, comment.
const JUMPS: &str = "\
filter|KUBE-EXTERNAL-SERVICES|INPUT|-m conntrack --ctstate NEW|kubernetes externally-visible service portals
filter|KUBE-EXTERNAL-SERVICES|FORWARD|-m conntrack --ctstate NEW|kubernetes externally-visible service portals
filter|KUBE-NODEPORTS|INPUT||kubernetes health check service ports
filter|KUBE-SERVICES|FORWARD|-m conntrack --ctstate NEW|kubernetes service portals
filter|KUBE-SERVICES|OUTPUT|-m conntrack --ctstate NEW|kubernetes service portals
filter|KUBE-FORWARD|FORWARD||kubernetes forwarding rules
filter|KUBE-PROXY-FIREWALL|INPUT|-m conntrack --ctstate NEW|kubernetes load balancer firewall
filter|KUBE-PROXY-FIREWALL|OUTPUT|-m conntrack --ctstate NEW|kubernetes load balancer firewall
filter|KUBE-PROXY-FIREWALL|FORWARD|-m conntrack --ctstate NEW|kubernetes load balancer firewall
nat|KUBE-SERVICES|OUTPUT||kubernetes service portals
nat|KUBE-SERVICES|PREROUTING||kubernetes service portals
nat|KUBE-POSTROUTING|POSTROUTING||kubernetes postrouting rules
filter|KUBE-FIREWALL|INPUT||
filter|KUBE-FIREWALL|OUTPUT||";

/// The jump rules as an iptables-restore input. Each was inserted at the top of its chain,
/// so the last one inserted comes first.
fn jump_rules() -> String {
    let jumps: Vec<Vec<&str>> = JUMPS.lines().map(|l| l.split('|').collect()).collect();
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let _ = writeln!(out, "*{table}");
        let mine = || jumps.iter().filter(move |j| j[0] == table);
        let mut chains: Vec<&str> = mine().map(|j| j[1]).collect();
        chains.sort();
        chains.dedup();
        for chain in chains {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for jump in mine().rev() {
            let (chain, from, matches, comment) = (jump[1], jump[2], jump[3], jump[4]);
            let mut rule = format!("-A {from}");
            if !matches.is_empty() {
                let _ = write!(rule, " {matches}");
            }
            if !comment.is_empty() {
                let _ = write!(rule, " -m comment --comment \"{comment}\"");
            }
            let _ = writeln!(out, "{rule} -j {chain}");
        }
        out.push_str("COMMIT\n");
    }
    out
}

struct RuleSet {
    text: String,
    nat_rules: usize,
}

/// What kube-proxy's syncProxyRules hands iptables-restore for `svcs` (ClusterIP Services,
/// all with endpoints), in the order it writes it; the Services in the order given.
fn kube_proxy_rules(svcs: &[Service]) -> RuleSet {
    let endpoints: usize = svcs.iter().map(|s| s.backends.len()).sum();
    let large = endpoints > LARGE_CLUSTER_ENDPOINTS;
    let mut nat_chains = String::new();
    let mut nat = String::new();
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(nat_chains, ":{chain} - [0:0]");
    }
    let _ = writeln!(
        nat,
        "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
    );
    let _ = writeln!(nat, "-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}");
    let _ = writeln!(
        nat,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
    );
    let _ = writeln!(nat, "-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}");
    for svc in svcs {
        let pn = &svc.port_name;
        let ip = svc.cluster_ip;
        let svc_chain = svc_chain(pn);
        let _ = writeln!(
            nat,
            "-A KUBE-SERVICES -m comment --comment \"{pn} cluster IP\" -m tcp -p tcp -d {ip} --dport {SERVICE_PORT} -j {svc_chain}"
        );
        let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            nat,
            "-A {svc_chain} -m comment --comment \"{pn} cluster IP\" -m tcp -p tcp -d {ip} --dport {SERVICE_PORT} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ"
        );
        let eps: Vec<(Ipv4Addr, String)> = svc
            .backends
            .iter()
            .map(|b| (b.addr, format!("{}:{}", b.addr, b.port)))
            .collect();
        for (i, (_, ep)) in eps.iter().enumerate() {
            let mut rule = format!("-A {svc_chain}");
            if !large {
                let _ = write!(rule, " -m comment --comment \"{pn} -> {ep}\"");
            }
            if i + 1 < eps.len() {
                let _ = write!(
                    rule,
                    " -m statistic --mode random --probability {:.10}",
                    1.0 / (eps.len() - i) as f64
                );
            }
            let _ = writeln!(nat, "{rule} -j {}", sep_chain(pn, ep));
        }
        for (addr, ep) in &eps {
            let sep = sep_chain(pn, ep);
            let _ = writeln!(nat_chains, ":{sep} - [0:0]");
            let comment = if large {
                String::new()
            } else {
                format!(" -m comment --comment {pn}")
            };
            let _ = writeln!(nat, "-A {sep}{comment} -s {addr} -j KUBE-MARK-MASQ");
            let _ = writeln!(
                nat,
                "-A {sep}{comment} -m tcp -p tcp -j DNAT --to-destination {ep}"
            );
        }
    }
    let _ = writeln!(
        nat,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );

    let mut text = String::from("*filter\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
    ] {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    text.push_str(
        "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n",
    );
    text.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    let _ = writeln!(
        text,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
    );
    text.push_str(
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
    );
    text.push_str("COMMIT\n*nat\n");
    text.push_str(&nat_chains);
    text.push_str(&nat);
    text.push_str("COMMIT\n");
    RuleSet {
        nat_rules: nat.lines().count(),
        text,
    }
}

// ---------------------------------------------------------------------------------------
// Namespaces, cgroup, pins: made for the run, removed after it even when it fails

/// Everything the run made outside the process; dropping it removes them.
struct Scratch {
    netns: Vec<String>,
    cgroup: Option<PathBuf>,
    pins: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for ns in self.netns.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        if let Some(cgroup) = self.cgroup.take() {
            let _ = std::fs::remove_dir(cgroup);
        }
        for pin in self.pins.drain(..) {
            let _ = datapath::unpin(&pin);
        }
    }
}

impl Scratch {
    fn add_netns(&mut self, name: &str) {
        self.netns.push(name.to_string());
        run("ip", &["netns", "add", name]);
    }

    fn del_netns(&mut self, name: &str) {
        self.netns.retain(|n| n != name);
        run("ip", &["netns", "del", name]);
    }
}

/// What an earlier run that did not get to clean up left behind.
fn remove_leftovers(cgroup_root: &Path) {
    let dead = |name: &str| {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| dead(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    for ns in names(Path::new("/run/netns")) {
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }
    for cg in names(cgroup_root) {
        let _ = std::fs::remove_dir(cgroup_root.join(cg));
    }
    for pin in names(Path::new("/sys/fs/bpf")) {
        let _ = datapath::unpin(&Path::new("/sys/fs/bpf").join(pin));
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &str) {
    run("ip", &args.split_whitespace().collect::<Vec<_>>());
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// The highest-numbered CPU this process may run on.
fn last_cpu() -> usize {
    // SAFETY: a zeroed cpu_set_t is an empty set, filled in by sched_getaffinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 0;
        }
        (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|cpu| libc::CPU_ISSET(*cpu, &set))
            .unwrap_or(0)
    }
}

/// Keeps the calling thread (and what it starts from then on) on one CPU.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity only read
    // and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn setns(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: setns on an open namespace file; only the calling thread changes namespace.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `iptables-restore` inside `netns` the way kube-proxy runs it; how long it took, from
/// starting the process to its exit.
fn iptables_restore(netns: &str, input: &str) -> Duration {
    let ns = File::open(netns_path(netns)).expect("netns");
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("iptables-restore");
    cmd.args(["-w", "5", "-W", "100000", "--noflush", "--counters"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only setns, async-signal-safe, between fork and exec.
    unsafe { cmd.pre_exec(move || setns(fd)) };
    let start = Instant::now();
    let mut child = cmd.spawn().expect("iptables-restore");
    // An error here shows as the exit status below.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    let out = child.wait_with_output().expect("iptables-restore");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "iptables-restore in {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

// ---------------------------------------------------------------------------------------
// The server, in the pod namespace

/// Listens on the pod's ports inside `netns` and answers every 64-byte request with it.
fn start_server(netns: &str, cpu: usize) -> tokio::runtime::Runtime {
    let path = netns_path(netns);
    let listeners: Vec<TcpListener> = std::thread::spawn(move || {
        let ns = File::open(&path).expect("pod netns");
        setns(ns.as_raw_fd()).expect("entering the pod netns");
        POD_PORTS
            .iter()
            .map(|port| TcpListener::bind((Ipv4Addr::UNSPECIFIED, *port)).expect("bind"))
            .collect()
    })
    .join()
    .expect("listener thread");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(move || pin_to(cpu).expect("pinning the server"))
        .enable_io()
        .build()
        .expect("runtime");
    for listener in listeners {
        listener.set_nonblocking(true).expect("nonblocking");
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                let _ = conn.set_nodelay(true);
                tokio::spawn(async move {
                    let mut buf = [0u8; MESSAGE];
                    while conn.read_exact(&mut buf).await.is_ok() {
                        if conn.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    rt
}

// ---------------------------------------------------------------------------------------
// The client: this binary again, in a client namespace

fn exchange(conn: &mut TcpStream, request: &[u8; MESSAGE]) {
    conn.write_all(request).expect("request");
    let mut reply = [0u8; MESSAGE];
    conn.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, request, "the server answers with the request");
}

/// Closes with a reset, so that thousands of connections leave no TIME_WAIT behind.
fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn connect(target: SocketAddrV4) -> TcpStream {
    let conn = TcpStream::connect(target).unwrap_or_else(|e| panic!("connecting to {target}: {e}"));
    conn.set_nodelay(true).expect("nodelay");
    conn
}

/// The client process, its targets (comma-separated, taken in turn) in the environment. It
/// answers commands on stdin, one line each:
/// - `setup K`: K new connections, each timed from connect to the reply to one request and
///   then reset; answers `setup <ns> ...`;
/// - `run MS`: requests over the keep-alive connections (opened on the first `run`) for MS
///   milliseconds; answers `requests <count> <ns>`.
fn client(spec: &str) {
    let targets: Vec<SocketAddrV4> = spec
        .split(',')
        .map(|t| t.parse().expect("target"))
        .collect();
    let request = [0x5a_u8; MESSAGE];
    let mut next = 0;
    let mut keepalive: Vec<TcpStream> = Vec::new();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lines() {
        let line = line.expect("a command");
        let (command, n) = line.split_once(' ').expect("command and number");
        let n: u64 = n.parse().expect("a number");
        let mut reply = String::new();
        match command {
            "setup" => {
                reply.push_str("setup");
                for _ in 0..n {
                    let target = targets[next % targets.len()];
                    let start = Instant::now();
                    let mut conn = connect(target);
                    exchange(&mut conn, &request);
                    let took = start.elapsed();
                    if next < targets.len() {
                        // The socket reports the address it asked for, however translated.
                        let peer = conn.peer_addr().expect("peer");
                        assert_eq!(peer, target.into(), "getpeername");
                    }
                    next += 1;
                    reset(conn);
                    let _ = write!(reply, " {}", took.as_nanos());
                }
            }
            "run" => {
                if keepalive.is_empty() {
                    keepalive = (0..KEEPALIVE)
                        .map(|i| connect(targets[i % targets.len()]))
                        .collect();
                }
                // A fixed number of exchanges on every connection, timed: requests/s is
                // their count over the time they took.
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for conn in keepalive.iter_mut() {
                        scope.spawn(|| {
                            for _ in 0..n {
                                exchange(conn, &request);
                            }
                        });
                    }
                });
                let requests = n * keepalive.len() as u64;
                let _ = write!(reply, "requests {requests} {}", start.elapsed().as_nanos());
            }
            other => panic!("unknown command {other}"),
        }
        reply.push('\n');
        out.write_all(reply.as_bytes()).expect("stdout");
        out.flush().expect("stdout");
    }
    for conn in keepalive {
        reset(conn);
    }
}

/// A client process and the pipes that drive it; dropping it ends it.
struct Client {
    child: std::process::Child,
    commands: Option<std::process::ChildStdin>,
    answers: std::io::BufReader<std::process::ChildStdout>,
    target: String,
}

impl Client {
    /// Starts a client inside `netns` (and in the cgroup whose `cgroup.procs` is given), on
    /// `cpu`, against `targets` in turn.
    fn start(
        netns: &str,
        cgroup_procs: Option<&Path>,
        cpu: usize,
        targets: &[SocketAddrV4],
    ) -> Client {
        let ns = File::open(netns_path(netns)).expect("client netns");
        let cgroup = cgroup_procs.map(|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        });
        let ns_fd = ns.as_raw_fd();
        let cgroup_fd = cgroup.as_ref().map(|f| f.as_raw_fd());
        let target = targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.env(CLIENT_ENV, &target)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only setns, sched_setaffinity and write(2), all async-signal-safe, between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                setns(ns_fd)?;
                pin_to(cpu)?;
                if let Some(fd) = cgroup_fd {
                    // "0" moves the writing process: the client, before it has a socket.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            })
        };
        let mut child = cmd.spawn().expect("client");
        Client {
            commands: child.stdin.take(),
            answers: std::io::BufReader::new(child.stdout.take().expect("stdout")),
            child,
            target,
        }
    }

    fn ask(&mut self, command: &str) -> Vec<u64> {
        use std::io::BufRead;
        let commands = self.commands.as_mut().expect("stdin");
        writeln!(commands, "{command}").expect("the client is gone");
        let mut answer = String::new();
        self.answers
            .read_line(&mut answer)
            .expect("the client's answer");
        assert!(
            !answer.is_empty(),
            "the client to {} failed (see above)",
            self.target
        );
        answer
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().expect("a number"))
            .collect()
    }

    fn setup(&mut self, n: usize) -> Vec<Duration> {
        let times = self.ask(&format!("setup {n}"));
        times.into_iter().map(Duration::from_nanos).collect()
    }

    /// Requests and the time they took.
    fn run(&mut self, per_connection: usize) -> (u64, Duration) {
        let answer = self.ask(&format!("run {per_connection}"));
        (answer[0], Duration::from_nanos(answer[1]))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Closing its stdin ends the client.
        drop(self.commands.take());
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Direct,
    KubeLb,
    Iptables,
}

const PATHS: [Via; 3] = [Via::Direct, Via::KubeLb, Via::Iptables];

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Direct => "(a) pod IP, directly",
            Via::KubeLb => "(b) ClusterIP, kube-lb",
            Via::Iptables => "(c) ClusterIP, kube-proxy iptables",
        }
    }
}

/// One path at one size: every connection setup time, and each round's figures.
#[derive(Default)]
struct Measured {
    setup: Vec<Duration>,
    rounds: Vec<Round>,
}

#[derive(Default)]
struct Round {
    setup: Vec<Duration>,
    requests: u64,
    window: Duration,
}

impl Round {
    fn setup_p50(&self) -> Duration {
        let mut v = self.setup.clone();
        v.sort();
        quantile(&v, 0.5)
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }
}

impl Measured {
    /// The median round's requests/s: a burst of other work on the machine spoils one
    /// round, not the figure.
    fn rps(&self) -> f64 {
        let mut v: Vec<f64> = self.rounds.iter().map(Round::rps).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
}

/// The three paths' clients take turns: in every round, batches of new connections, then
/// slices of keep-alive requests, each path's turn coming first, second and third equally
/// often.
fn measure(clients: &mut [Client; 3]) -> Vec<Measured> {
    for client in clients.iter_mut() {
        client.setup(WARMUP);
        client.run(SLICE);
    }
    let mut measured: Vec<Measured> = (0..3).map(|_| Measured::default()).collect();
    let mut turn = 0;
    for _ in 0..ROUNDS {
        let mut rounds: Vec<Round> = (0..3).map(|_| Round::default()).collect();
        for _ in 0..BATCHES {
            for i in order(turn) {
                rounds[i].setup.extend(clients[i].setup(BATCH));
            }
            turn += 1;
        }
        for _ in 0..SLICES {
            for i in order(turn) {
                let (requests, took) = clients[i].run(SLICE);
                rounds[i].requests += requests;
                rounds[i].window += took;
            }
            turn += 1;
        }
        for (m, round) in measured.iter_mut().zip(rounds) {
            m.setup.extend(&round.setup);
            m.rounds.push(round);
        }
    }
    for m in &mut measured {
        m.setup.sort();
    }
    measured
}

// ---------------------------------------------------------------------------------------
// The report

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct SizeResult {
    services: usize,
    paths: Vec<(Via, Measured)>,
}

struct LoadResult {
    services: usize,
    map_writes: usize,
    /// Of `maps`, what Tables itself takes, the writes aside.
    map_own: Duration,
    maps: Duration,
    iptables: Duration,
    iptables_samples: usize,
    nat_rules: usize,
}

/// Counts the writes `Tables::apply` makes, writing nothing.
#[derive(Default)]
struct CountWrites(usize);

impl MapWriter for CountWrites {
    fn put_service(&mut self, _: LbKey, _: LbValue) -> anyhow::Result<()> {
        self.0 += 1;
        Ok(())
    }
    fn del_service(&mut self, _: LbKey) -> anyhow::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

/// A client namespace joined to the pod namespace by its own veth pair (`index` picks the
/// names and the /30), with a default route to the pod side, as a node reaches its pods;
/// nothing else routes the ClusterIPs.
fn add_client_netns(scratch: &mut Scratch, name: &str, pod_ns: &str, index: usize) {
    let pid = std::process::id();
    scratch.add_netns(name);
    let (near, far) = (format!("fkb{pid}c{index}"), format!("fkb{pid}p{index}"));
    let subnet = 1 + index;
    ip(&format!(
        "link add {near} netns {name} type veth peer name {far} netns {pod_ns}"
    ));
    ip(&format!(
        "-n {pod_ns} addr add 10.244.{subnet}.2/30 dev {far}"
    ));
    ip(&format!("-n {pod_ns} link set {far} up"));
    ip(&format!("-n {name} link set lo up"));
    ip(&format!(
        "-n {name} addr add 10.244.{subnet}.1/30 dev {near}"
    ));
    ip(&format!("-n {name} link set {near} up"));
    ip(&format!(
        "-n {name} route add default via 10.244.{subnet}.2"
    ));
}

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        client(&spec);
        return;
    }
    // Upstream's own test names these chains so (TestOverallIPTablesRules).
    assert_eq!(svc_chain("ns1/svc1:p80"), "KUBE-SVC-XPGD46QRK7WJZT7O");
    assert_eq!(
        sep_chain("ns1/svc1:p80", "10.180.0.1:80"),
        "KUBE-SEP-SXIVWICOYRO3J4NJ"
    );

    let load_at_start = load_average();
    let pid = std::process::id();
    let cgroup_root = node::cgroup2_root().expect("a cgroup2 hierarchy");
    remove_leftovers(&cgroup_root);
    let mut scratch = Scratch {
        netns: Vec::new(),
        cgroup: None,
        pins: Vec::new(),
    };
    let pod_ns = format!("{PREFIX}{pid}-pod");
    let lb_ns = format!("{PREFIX}{pid}-lb");
    scratch.add_netns(&pod_ns);
    ip(&format!("-n {pod_ns} link set lo up"));
    ip(&format!("-n {pod_ns} addr add {POD_IP}/32 dev lo"));
    add_client_netns(&mut scratch, &lb_ns, &pod_ns, 0);
    // The server's threads and every client share one CPU, so that where the scheduler
    // puts them is the same for every path.
    let cpu = last_cpu();
    let _server = start_server(&pod_ns, cpu);

    // Writing N Services into fresh maps, before anything else loads the machine.
    let apply_pins = PathBuf::from(format!("/sys/fs/bpf/{PREFIX}{pid}-apply"));
    scratch.pins.push(apply_pins.clone());
    let mut map_loads = Vec::new();
    for n in SIZES {
        let svcs = services(n);
        let frontends: Vec<Frontend> = svcs.iter().map(frontend).collect();
        // The same into a writer that only counts: the writes, and Tables' own share.
        let (mut writes, mut own) = (0, Vec::new());
        for _ in 0..LOADS {
            let mut count = CountWrites::default();
            let mut t = Tables::default();
            let start = Instant::now();
            for (svc, fe) in svcs.iter().zip(&frontends) {
                t.apply(&svc.name, std::slice::from_ref(fe), &mut count)
                    .expect("counting");
            }
            own.push(start.elapsed());
            writes = count.0;
        }
        let mut times = Vec::new();
        for _ in 0..LOADS {
            datapath::unpin(&apply_pins).expect("unpin");
            let (bpf, mut fresh) = datapath::load(&apply_pins).expect("loading the maps");
            let mut t = Tables::default();
            let start = Instant::now();
            for (svc, fe) in svcs.iter().zip(&frontends) {
                t.apply(&svc.name, std::slice::from_ref(fe), &mut fresh)
                    .expect("writing the maps");
            }
            times.push(start.elapsed());
            drop((bpf, fresh));
            datapath::unpin(&apply_pins).expect("unpin");
        }
        map_loads.push((writes, median(own), median(times)));
    }

    // kube-lb: the programs on a cgroup of their own, the maps pinned for this run.
    let cgroup = cgroup_root.join(format!("{PREFIX}{pid}"));
    std::fs::create_dir(&cgroup).expect("creating the cgroup");
    scratch.cgroup = Some(cgroup.clone());
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{PREFIX}{pid}"));
    scratch.pins.push(pin_dir.clone());
    let (bpf, mut maps) = datapath::load(&pin_dir).expect("loading kube-lb's programs");
    let (report, mut attached) = tokio::sync::watch::channel(Ok(NodeState::default()));
    node::spawn(
        bpf,
        NodeOptions {
            cgroup: cgroup.clone(),
            netns: Some(netns_path(&lb_ns)),
            interfaces: Some(Vec::new()),
            bpf_dir: pin_dir.clone(),
        },
        report,
    );
    let waiter = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    waiter
        .block_on(attached.changed())
        .expect("the node thread ended");
    if let Err(e) = &*attached.borrow() {
        panic!("attaching kube-lb's programs: {e}");
    }
    let cgroup_procs = cgroup.join("cgroup.procs");
    let mut tables = Tables::default();

    let vip = [SocketAddrV4::new(MEASURED_IP, SERVICE_PORT)];
    let pod: Vec<SocketAddrV4> = POD_PORTS
        .iter()
        .map(|port| SocketAddrV4::new(POD_IP, *port))
        .collect();
    let mut results = Vec::new();
    let mut loads = Vec::new();
    for (k, n) in SIZES.into_iter().enumerate() {
        let svcs = services(n);
        for svc in &svcs {
            tables
                .apply(&svc.name, &[frontend(svc)], &mut maps)
                .expect("writing the maps");
        }
        assert_eq!(tables.service_count(), n);

        // kube-proxy, in a namespace of its own for each size: its jump rules, as it inserts
        // them before its first sync, then the rule set in one iptables-restore (timed). The
        // further loads go into empty namespaces.
        let rules = kube_proxy_rules(&svcs);
        let ipt_ns = format!("{PREFIX}{pid}-ipt{k}");
        add_client_netns(&mut scratch, &ipt_ns, &pod_ns, 1 + k);
        iptables_restore(&ipt_ns, &jump_rules());
        let mut ipt_times = vec![iptables_restore(&ipt_ns, &rules.text)];
        let restore_ns = format!("{PREFIX}{pid}-restore");
        while ipt_times.len() < IPTABLES_LOADS[k] {
            scratch.add_netns(&restore_ns);
            iptables_restore(&restore_ns, &jump_rules());
            ipt_times.push(iptables_restore(&restore_ns, &rules.text));
            scratch.del_netns(&restore_ns);
        }
        let (map_writes, map_own, map_time) = map_loads[k];
        loads.push(LoadResult {
            services: n,
            map_writes,
            map_own,
            maps: map_time,
            iptables_samples: ipt_times.len(),
            iptables: median(ipt_times),
            nat_rules: rules.nat_rules,
        });

        let mut clients = [
            Client::start(&lb_ns, None, cpu, &pod),
            Client::start(&lb_ns, Some(&cgroup_procs), cpu, &vip),
            Client::start(&ipt_ns, None, cpu, &vip),
        ];
        let measured: Vec<(Via, Measured)> = PATHS.into_iter().zip(measure(&mut clients)).collect();
        drop(clients);
        results.push(SizeResult {
            services: n,
            paths: measured,
        });
    }

    let load = (load_at_start, load_average());
    let iptables = run("iptables-restore", &["--version"]).trim().to_string();
    print_report(&results, &loads, &iptables, load);
    drop(scratch);
}

/// The order of the three paths in a round: rotated and reversed in turn, so that over six
/// rounds each path comes first, second and third, after each of the others, equally often.
fn order(round: usize) -> [usize; 3] {
    let r = round % 3;
    let rotated = [r, (r + 1) % 3, (r + 2) % 3];
    if (round / 3).is_multiple_of(2) {
        rotated
    } else {
        [rotated[2], rotated[1], rotated[0]]
    }
}

/// What else the machine was doing: the 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The lowest and highest of per-round ratios, as `0.97-1.04`.
fn range(ratios: impl Iterator<Item = f64>) -> (f64, f64) {
    ratios.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
        (lo.min(r), hi.max(r))
    })
}

fn print_report(
    results: &[SizeResult],
    loads: &[LoadResult],
    iptables: &str,
    load: (String, String),
) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A server in a \"pod\" network namespace (pod IP {POD_IP}, ports 8080-8082; a 64-byte \
         request answered with the same 64 bytes), clients as separate processes in other \
         namespaces joined to it by veth pairs. Every Service has one TCP port and 1-3 \
         endpoints; the measured one has 3, all on the server, and (a) takes the same three \
         ports in turn. (b): kube-lb's socket programs on a cgroup (v2) the client joins, the \
         Services written with `Tables::apply`. (c): `{iptables}` (the host's default), the \
         filter and nat rules kube-proxy's iptables mode writes for the same Services (its jump \
         rules; KUBE-SERVICES -> KUBE-SVC-* with `statistic` -> KUBE-SEP-* with KUBE-MARK-MASQ \
         and DNAT; KUBE-POSTROUTING masquerade; cluster CIDR {CLUSTER_CIDR}; endpoint rules \
         without comments above 1,000 endpoints), loaded with `iptables-restore --noflush \
         --counters`. The measured Service's rule is the last in KUBE-SERVICES: kube-proxy walks \
         that chain rule by rule for every new connection and writes Services in no fixed \
         order, so this is the worst case. The client's address is in the cluster CIDR, like a \
         pod's; its connections meet KUBE-SERVICES in nat OUTPUT, the same walk a pod's \
         connections take in the node's PREROUTING.\n\n\
         Per Service count, one client process per path, all three and the server's threads \
         pinned to one CPU. {ROUNDS} rounds; in each, the paths take turns (each first, second \
         and third equally often) at {BATCHES} batches of {BATCH} new connections, each timed \
         from connect to the reply to one request (after {WARMUP} untimed ones; all rounds \
         pooled for p50 and p99), then at {SLICES} slices of {SLICE} requests on each of \
         {KEEPALIVE} keep-alive connections, timed (requests/s: the median round). Machine load average (1 min): \
         {} at the start, {} at the end.",
        load.0,
        load.1,
    );
    out.push('\n');
    out.push_str(
        "| Services | path | setup p50 | setup p99 | p50 vs (a) | requests/s | vs (a) |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    let mut summary = String::new();
    for r in results {
        let get = |p: Via| &r.paths.iter().find(|(q, _)| *q == p).expect("path").1;
        let a = get(Via::Direct);
        let (a50, arps) = (quantile(&a.setup, 0.5), a.rps());
        let vs_a = |m: &Measured| {
            (
                quantile(&m.setup, 0.5).as_secs_f64() / a50.as_secs_f64(),
                m.rps() / arps,
            )
        };
        for (via, m) in &r.paths {
            let (lat, rps) = vs_a(m);
            let (lat_vs, rps_vs) = if *via == Via::Direct {
                ("—".to_string(), "—".to_string())
            } else {
                (format!("{lat:.2}x"), format!("{:.0}%", rps * 100.0))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {lat_vs} | {:.0} | {rps_vs} |",
                thousands(r.services),
                via.label(),
                us(quantile(&m.setup, 0.5)),
                us(quantile(&m.setup, 0.99)),
                m.rps(),
            );
        }
        let (b, c) = (get(Via::KubeLb), get(Via::Iptables));
        let (b_lat, b_rps) = vs_a(b);
        let (c_lat, c_rps) = vs_a(c);
        let rounds = |m: &Measured| {
            let lat = range(
                m.rounds
                    .iter()
                    .zip(&a.rounds)
                    .map(|(x, y)| x.setup_p50().as_secs_f64() / y.setup_p50().as_secs_f64()),
            );
            let rps = range(
                m.rounds
                    .iter()
                    .zip(&a.rounds)
                    .map(|(x, y)| x.rps() / y.rps()),
            );
            format!(
                "{:.2}-{:.2}x, {:.0}-{:.0}%",
                lat.0,
                lat.1,
                rps.0 * 100.0,
                rps.1 * 100.0
            )
        };
        let within = b_lat <= 1.05 && b_rps >= 0.95;
        let _ = writeln!(
            summary,
            "| {} | {b_lat:.2}x | {:.0}% | {} | {} | {c_lat:.2}x | {:.0}% | {} |",
            thousands(r.services),
            b_rps * 100.0,
            rounds(b),
            if within { "met" } else { "not met" },
            c_rps * 100.0,
            rounds(c),
        );
    }
    out.push_str(
        "\nTarget: (b) within 5% of (a) at every size (setup p50 at most 1.05x, requests/s at \
         least 95%); (c) degrading with the Service count. Per round: the lowest and highest \
         ratio of one round's figures, a measure of the noise.\n\n",
    );
    out.push_str(
        "| Services | (b) setup p50 / (a) | (b) requests/s / (a) | (b) per round | (b) within 5% | (c) setup p50 / (a) | (c) requests/s / (a) | (c) per round |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    out.push_str(&summary);

    out.push_str("\n### Writing N Services from nothing\n\n");
    let _ = writeln!(
        out,
        "kube-lb: `Tables::apply`, one call per Service, into freshly loaded (empty) maps, \
         median of {LOADS}; \"of which Tables\" is the same into a writer that only counts \
         (the bookkeeping without the map syscalls). iptables: one `iptables-restore` process with kube-proxy's rule set \
         for the same Services (filter and nat), into a new network namespace holding only \
         kube-proxy's jump rules, timed from starting the process to its exit; median of the \
         samples shown (one for 10,000 Services, whose load takes the better part of a minute)."
    );
    out.push('\n');
    out.push_str(
        "| Services | kube-lb map writes | kube-lb: maps | of which Tables | nat rules | iptables-restore | samples | maps vs iptables |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for l in loads {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1}% |",
            thousands(l.services),
            thousands(l.map_writes),
            ms(l.maps),
            ms(l.map_own),
            thousands(l.nat_rules),
            ms(l.iptables),
            l.iptables_samples,
            l.maps.as_secs_f64() / l.iptables.as_secs_f64() * 100.0,
        );
    }
    if let Some(l) = loads.iter().find(|l| l.services == 10_000) {
        let _ = writeln!(
            out,
            "\nTarget: 10,000 Services into the maps in under 100 ms: {} ({}).",
            if l.maps < Duration::from_millis(100) {
                "met"
            } else {
                "not met"
            },
            ms(l.maps)
        );
    }
    print!("{out}");
}
