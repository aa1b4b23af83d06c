//! A second network namespace joined to ours by a veth pair, and processes run inside it: the
//! way to cut a real link (`ip link set DEV down`) under a real WebRTC connection.
//!
//! The test binary itself runs in the namespace `tests/netns-run` made for it ("A"). A [`Veth`]
//! adds namespace "B" with a veth pair `pm<n>a` (in A, 10.77.n.1/24) and `pm<n>b` (in B,
//! 10.77.n.2/24), and a route for 224.0.0.0/4 on B's end (webrtc-rs's mDNS socket needs one;
//! A's default route through `lo` covers it there). [`Child`] runs a helper test of this same
//! binary inside B. Everything is deleted on drop; child processes are killed by PID.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("network setup failed: {e}");
    }
}

/// Whether this process may create namespaces (root). Tests that need two namespaces say so
/// and stop when it may not: they cannot run on an ordinary user's machine.
pub fn can_create_namespaces() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("SKIPPED: cutting a real link needs root (network namespaces and veth pairs)");
    }
    root
}

/// Namespace B and the veth pair to it.
pub struct Veth {
    /// Namespace B's name.
    pub ns: String,
    /// Our end of the pair.
    pub dev: String,
    peer_dev: String,
    /// Our address.
    pub addr_a: String,
    /// B's address.
    pub addr_b: String,
}

impl Veth {
    /// Creates namespace B and the pair. Panics if it cannot (never falls back).
    pub fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 250;
        // Under tests/netns-run, named after its namespace: it deletes them all at the end.
        let ns = match std::env::var("PEER_MESSAGE_NETNS") {
            Ok(outer) if !outer.is_empty() => format!("{outer}-b{n}"),
            _ => format!("peer-message-{}-b{n}", std::process::id()),
        };
        let dev = format!("pm{n}a");
        let peer_dev = format!("pm{n}b");
        let addr_a = format!("10.77.{n}.1");
        let addr_b = format!("10.77.{n}.2");
        must(&["netns", "add", &ns]);
        let veth = Veth {
            ns,
            dev,
            peer_dev,
            addr_a,
            addr_b,
        };
        must(&[
            "link",
            "add",
            &veth.dev,
            "type",
            "veth",
            "peer",
            "name",
            &veth.peer_dev,
            "netns",
            &veth.ns,
        ]);
        must(&[
            "addr",
            "add",
            &format!("{}/24", veth.addr_a),
            "dev",
            &veth.dev,
        ]);
        must(&["link", "set", &veth.dev, "up"]);
        must(&["-n", &veth.ns, "link", "set", "lo", "up"]);
        must(&[
            "-n",
            &veth.ns,
            "addr",
            "add",
            &format!("{}/24", veth.addr_b),
            "dev",
            &veth.peer_dev,
        ]);
        must(&["-n", &veth.ns, "link", "set", &veth.peer_dev, "up"]);
        veth.multicast_routes();
        veth
    }

    fn multicast_routes(&self) {
        // `replace`: fine whether the route survived or not.
        must(&[
            "-n",
            &self.ns,
            "route",
            "replace",
            "224.0.0.0/4",
            "dev",
            &self.peer_dev,
        ]);
    }

    /// Cuts the link: our end goes down (its routes with it).
    pub fn cut(&self) {
        must(&["link", "set", &self.dev, "down"]);
    }

    /// Restores the link, and the multicast route that `down` dropped.
    pub fn restore(&self) {
        must(&["link", "set", &self.dev, "up"]);
        self.multicast_routes();
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Under tests/netns-run the pair stays until the binary is done, and the runner deletes
        // it: deleting it now would take an address away from this namespace while other tests
        // here run, and a WebRTC connection of theirs may have picked it (ICE gathers every
        // interface's address). Otherwise, deleting the namespace deletes both ends of the pair.
        if std::env::var("PEER_MESSAGE_NETNS").is_ok_and(|ns| !ns.is_empty()) {
            return;
        }
        let _ = ip(&["netns", "delete", &self.ns]);
    }
}

/// A helper test of this binary running inside namespace B, its output collected line by line.
pub struct Child {
    process: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Child {
    /// Runs `path::to::helper` (an `#[ignore]`d test of this binary) in `ns` with `env`.
    #[allow(dead_code)] // not every binary that includes this module runs test helpers
    pub fn spawn(ns: &str, helper: &str, env: &[(&str, String)]) -> Self {
        Self::spawn_self(
            ns,
            &[
                helper,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ],
            env,
        )
    }

    /// Runs this same binary with `args` in `ns` with `env`.
    pub fn spawn_self(ns: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("binary path");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut process = command.spawn().expect("spawn the helper process");
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = process.stdout.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    eprintln!("  [child] {line}");
                    if let Ok(mut l) = sink.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Child { process, lines }
    }

    /// Whether the child printed a line containing `text`.
    pub fn said(&self, text: &str) -> bool {
        self.lines
            .lock()
            .map(|l| l.iter().any(|x| x.contains(text)))
            .unwrap_or(false)
    }

    /// Every line the child printed so far.
    #[allow(dead_code)] // the benchmarks read them; tests ask `said`
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits for the child to exit on its own; its success.
    pub fn wait(&mut self, timeout: Duration) -> Option<bool> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.process.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the child (SIGKILL), by PID: a process that dies without a word.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            self.kill();
        }
    }
}

/// Reads a helper's parameter, with a clear failure when the helper is run by hand.
pub fn param(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this helper runs inside a peer namespace, started by another test"
        )
    })
}
