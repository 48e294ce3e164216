//! Hosts in network namespaces: an outside host holding the switch all nodes plug into, nodes
//! with a pod bridge and routes to each other's pod ranges, and pods on a node's bridge. Each
//! node has its own cgroup, which its kube-lb attaches the socket programs to; pod and node
//! processes that should be load-balanced run in it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    fn new(name: String) -> Netns {
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    pub fn ip(&self, args: &str) {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend(args.split_whitespace());
        run(&all);
    }

    fn sysctl(&self, setting: &str) {
        run(&["ip", "netns", "exec", &self.name, "sysctl", "-qw", setting]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let path = kube_lb::node::cgroup2_root()
            .expect("a cgroup2 hierarchy")
            .join(name);
        std::fs::create_dir_all(&path).expect("create cgroup");
        Cgroup { path }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes still inside would keep it; tests kill theirs first.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Runs a command inside `netns`, and inside `cgroup` when given, from its first instruction:
/// it joins both before exec.
pub fn command(netns: &Netns, cgroup: Option<&Cgroup>, program: &str, args: &[&str]) -> Command {
    let ns = File::open(netns.path()).expect("open netns");
    let procs = cgroup.map(|c| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(c.path.join("cgroup.procs"))
            .expect("open cgroup.procs")
    });
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: only setns and write on descriptors opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(f) = &procs {
                if libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// A backend: answers every TCP read and every UDP datagram on `port` with
/// `<name> <client address>:<client port>`, so a test sees who answered and whom it saw.
const SERVER: &str = r#"
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def serve(c, a):
    with c:
        while c.recv(1024):
            c.sendall(f"{name} {a[0]}:{a[1]}\n".encode())
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(128)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", port))
def udp():
    while True:
        _, a = u.recvfrom(1024)
        u.sendto(f"{name} {a[0]}:{a[1]}\n".encode(), a)
threading.Thread(target=udp, daemon=True).start()
print("listening", flush=True)
while True:
    c, a = t.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
"#;

/// A client: `tcp|udp|udp-connected HOST PORT N` makes N exchanges and prints one line each:
/// the answer, then the peer its socket reports; `hold HOST PORT` keeps one TCP connection
/// and makes an exchange for every line on stdin. Failures print `error <errno name>`.
const CLIENT: &str = r#"
import errno, socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def once(make):
    try:
        print(make(), flush=True)
    except OSError as e:
        print("error", errno.errorcode.get(e.errno, str(e)), flush=True)
def tcp():
    with socket.create_connection((host, port)) as s:
        s.sendall(b"hi")
        line = s.makefile().readline().strip()
        return f"{line} peer={s.getpeername()[0]}:{s.getpeername()[1]}"
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hi", (host, port))
        data, a = s.recvfrom(1024)
        return f"{data.decode().strip()} peer={a[0]}:{a[1]}"
def udp_connected():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        s.send(b"hi")
        data = s.recv(1024)
        return f"{data.decode().strip()} peer={s.getpeername()[0]}:{s.getpeername()[1]}"
if mode == "hold":
    s = socket.create_connection((host, port))
    f = s.makefile()
    for _ in sys.stdin:
        once(lambda: (s.sendall(b"hi"), f.readline().strip())[1])
else:
    for _ in range(int(sys.argv[4])):
        once({"tcp": tcp, "udp": udp, "udp-connected": udp_connected}[mode])
"#;

pub struct Node {
    pub name: String,
    pub netns: Netns,
    pub addr: Ipv4Addr,
    pub cgroup: Cgroup,
    index: u8,
}

pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub node: String,
    pub netns: Netns,
    servers: Vec<Child>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// The outside host: the switch between the nodes, and a client that is in no cluster.
pub struct Cluster {
    pub id: String,
    pub outside: Netns,
    pub outside_addr: Ipv4Addr,
    pub nodes: Vec<Node>,
    pods: u8,
    /// The test's own cgroup, parent of the nodes'.
    _cgroup: Cgroup,
}

impl Cluster {
    pub fn new(nodes: u8) -> Cluster {
        let id = format!(
            "fk{}x{}",
            std::process::id() % 100000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let outside = Netns::new(format!("{id}out"));
        outside.ip("link add sw type bridge");
        outside.ip("addr add 192.168.77.1/24 dev sw");
        outside.ip("link set sw up");
        let cgroup = Cgroup::new(&id);
        let mut cluster = Cluster {
            outside,
            outside_addr: Ipv4Addr::new(192, 168, 77, 1),
            nodes: Vec::new(),
            pods: 0,
            _cgroup: cgroup,
            id,
        };
        for i in 1..=nodes {
            cluster.add_node(i);
        }
        for a in &cluster.nodes {
            for b in &cluster.nodes {
                if a.index != b.index {
                    a.netns
                        .ip(&format!("route add 10.77.{}.0/24 via {}", b.index, b.addr));
                }
            }
        }
        cluster
    }

    fn add_node(&mut self, i: u8) {
        let name = format!("node{i}");
        let netns = Netns::new(format!("{}n{i}", self.id));
        let addr = Ipv4Addr::new(192, 168, 77, 10 + i);
        self.outside.ip(&format!(
            "link add up{i} type veth peer name eth0 netns {}",
            netns.name
        ));
        self.outside.ip(&format!("link set up{i} master sw up"));
        netns.ip(&format!("addr add {addr}/24 dev eth0"));
        netns.ip("link set eth0 up");
        netns.ip("link add cbr0 type bridge");
        netns.ip(&format!("addr add 10.77.{i}.1/24 dev cbr0"));
        netns.ip("link set cbr0 up");
        netns.sysctl("net.ipv4.ip_forward=1");
        let cgroup = Cgroup::new(&format!("{}/{name}", self.id));
        self.nodes.push(Node {
            name,
            netns,
            addr,
            cgroup,
            index: i,
        });
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    /// A pod on `node` running the backend server on `port` under `name`.
    pub async fn pod(&mut self, name: &str, node: &str, port: Option<u16>) -> Pod {
        self.pods += 1;
        let k = self.pods;
        let n = self.node(node);
        let netns = Netns::new(format!("{}p{k}", self.id));
        let ip = Ipv4Addr::new(10, 77, n.index, 10 + k);
        n.netns.ip(&format!(
            "link add vp{k} type veth peer name eth0 netns {}",
            netns.name
        ));
        n.netns.ip(&format!("link set vp{k} master cbr0 up"));
        netns.ip(&format!("addr add {ip}/24 dev eth0"));
        netns.ip("link set eth0 up");
        netns.ip(&format!("route add default via 10.77.{}.1", n.index));
        let mut pod = Pod {
            name: name.to_string(),
            ip,
            node: node.to_string(),
            netns,
            servers: Vec::new(),
        };
        if let Some(port) = port {
            let mut child = command(
                &pod.netns,
                Some(&n.cgroup),
                "python3",
                &["-c", SERVER, name, &port.to_string()],
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("start server");
            let stdout = child.stdout.take().expect("stdout");
            pod.servers.push(child);
            // Listening on both sockets before anyone connects.
            tokio::task::spawn_blocking(move || {
                use std::io::BufRead;
                let mut line = String::new();
                std::io::BufReader::new(stdout)
                    .read_line(&mut line)
                    .expect("read");
                assert_eq!(line.trim(), "listening");
            })
            .await
            .expect("server start");
        }
        pod
    }
}

/// Where a client runs: inside a pod or on a node (both load-balanced by the node's socket
/// programs), or on the outside host (only what arrives at a node is translated).
pub enum From<'a> {
    Pod(&'a Pod, &'a Node),
    Node(&'a Node),
    Outside(&'a Cluster),
}

/// Runs the client and returns its lines.
pub async fn client(
    from: From<'_>,
    mode: &str,
    host: Ipv4Addr,
    port: u16,
    n: usize,
) -> Vec<String> {
    let (netns, cgroup) = match &from {
        From::Pod(p, node) => (&p.netns, Some(&node.cgroup)),
        From::Node(node) => (&node.netns, Some(&node.cgroup)),
        From::Outside(c) => (&c.outside, None),
    };
    let mut cmd = command(
        netns,
        cgroup,
        "python3",
        &[
            "-c",
            CLIENT,
            mode,
            &host.to_string(),
            &port.to_string(),
            &n.to_string(),
        ],
    );
    let out: Output = tokio::task::spawn_blocking(move || cmd.output().expect("client"))
        .await
        .expect("client task");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A client holding one TCP connection open, exchanging on demand.
pub struct Held {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Held {
    pub fn open(from: From<'_>, host: Ipv4Addr, port: u16) -> Held {
        let (netns, cgroup) = match &from {
            From::Pod(p, node) => (&p.netns, Some(&node.cgroup)),
            From::Node(node) => (&node.netns, Some(&node.cgroup)),
            From::Outside(c) => (&c.outside, None),
        };
        let mut child = command(
            netns,
            cgroup,
            "python3",
            &["-c", CLIENT, "hold", &host.to_string(), &port.to_string()],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Held {
            child,
            stdin,
            stdout,
        }
    }

    /// One exchange on the held connection.
    pub fn exchange(&mut self) -> String {
        use std::io::{BufRead, Write};
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        line.trim().to_string()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
