//! An internet in a box: home networks behind NAT routers, a "public" network with the
//! signaling server and a STUN/TURN server (coturn), all in network namespaces this test makes
//! and deletes. Nothing leaves them.
//!
//! ```text
//!   home i (ns H_i)            router i (ns R_i)                 public (ns P)
//!   10.9i.n.2  ──pml veth──  10.9i.n.1 │ NAT │ 10.8i.n.2  ──pmw veth──  10.8i.n.1
//! ```
//!
//! P is the public internet: it forwards between the routers' public addresses and hosts the
//! servers (coturn, and a signaling server the caller starts there), which listen on
//! [`Internet::public`] (10.81.n.1). The box touches nothing in the test binary's own
//! namespace: WebRTC gathers candidates on every interface there, and a connection of another
//! test that picked an address of the box would break when the box is deleted. Each router masquerades its home network behind its public
//! address with nftables: [`Nat::Cone`] keeps one public port per home socket (hole punching
//! crosses it: STUN's server-reflexive candidates connect directly), [`Nat::Symmetric`] takes a
//! new port for every destination (`masquerade random`), so only a TURN relay gets through.
//! Home networks have no route to each other: a peer's host candidates are useless to the
//! other side. P's default route leads into a namespace that swallows everything, as the
//! internet does with a private address: without one, coturn's relayed sends to such an
//! address fail (`ENETUNREACH`) and its allocation dies with them.

use std::{
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// The kind of NAT a home network sits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Endpoint-independent mapping (Linux keeps the source port), address- and
    /// port-dependent filtering: what most home routers do. Hole punching crosses it.
    Cone,
    /// A new public port for every destination: hole punching cannot cross it.
    Symmetric,
    /// No NAT: the router only routes, and the home's addresses are reachable from the public
    /// side (a peer with a public address).
    None,
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program} stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args, None) {
        panic!("network setup failed: {e}");
    }
}

/// Whether the tools this needs are installed (`.ci/run` installs them); says which are
/// missing otherwise.
pub fn tools_present() -> bool {
    let missing: Vec<&str> = ["nft", "turnserver", "conntrack"]
        .into_iter()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: the internet in a box needs {missing:?} (apt-get install nftables coturn conntrack; .ci/run does)"
        );
    }
    missing.is_empty()
}

/// One home network: its router and the namespace a peer runs in.
pub struct Home {
    /// The peer's namespace.
    pub ns: String,
    /// The router's namespace.
    pub router: String,
    /// The public namespace.
    public_ns: String,
    /// The public side's end of the router's uplink.
    uplink: String,
}

impl Home {
    /// Cuts the home's uplink (the public side's end of the router's link).
    pub fn cut(&self) {
        must(
            "ip",
            &["-n", &self.public_ns, "link", "set", &self.uplink, "down"],
        );
    }

    /// Restores it (and the public side's route to the router, which `down` dropped).
    pub fn restore(&self) {
        must(
            "ip",
            &["-n", &self.public_ns, "link", "set", &self.uplink, "up"],
        );
    }

    /// Forgets every NAT mapping of the router (`conntrack -F`): the next packets get new
    /// public ports, as after a router reboot or a mapping timeout.
    pub fn flush_nat(&self) {
        must("ip", &["netns", "exec", &self.router, "conntrack", "-F"]);
    }
}

/// The whole box; deleted (namespaces, links, coturn) on drop.
pub struct Internet {
    /// Where the servers listen, reachable from every home.
    pub public: String,
    /// The public namespace, where the servers run.
    pub public_ns: String,
    /// The namespace P's default route leads into.
    void_ns: String,
    /// The home networks.
    pub homes: Vec<Home>,
    turn: Option<std::process::Child>,
    turn_dir: Option<std::path::PathBuf>,
    /// The signaling server's process, once started.
    signaling: Option<crate::netns::Child>,
    /// The TURN server's shared secret (`use-auth-secret`), once started.
    pub turn_secret: Option<String>,
    /// The TURN server's port.
    pub turn_port: u16,
}

impl Internet {
    /// The public network and one home per entry of `nats`, behind that kind of NAT.
    pub fn create(nats: &[Nat]) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 250;
        let pid = std::process::id();
        let public_ns = format!("peer-message-{pid}-p{n}");
        let void_ns = format!("peer-message-{pid}-v{n}");
        let mut internet = Internet {
            public: format!("10.81.{n}.1"),
            public_ns: public_ns.clone(),
            void_ns: void_ns.clone(),
            homes: Vec::new(),
            turn: None,
            turn_dir: None,
            signaling: None,
            turn_secret: None,
            turn_port: 3478,
        };
        let p = |args: &[&str]| {
            let mut all = vec!["-n", public_ns.as_str()];
            all.extend_from_slice(args);
            must("ip", &all);
        };
        must("ip", &["netns", "add", &public_ns]);
        must("ip", &["netns", "add", &void_ns]);
        p(&["link", "set", "lo", "up"]);
        must(
            "ip",
            &[
                "netns",
                "exec",
                &public_ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        let void_p = format!("pmv{n}p");
        let void_v = format!("pmv{n}v");
        p(&[
            "link", "add", &void_p, "type", "veth", "peer", "name", &void_v, "netns", &void_ns,
        ]);
        p(&["addr", "add", &format!("10.99.{n}.1/30"), "dev", &void_p]);
        p(&["link", "set", &void_p, "up"]);
        must(
            "ip",
            &[
                "-n",
                &void_ns,
                "addr",
                "add",
                &format!("10.99.{n}.2/30"),
                "dev",
                &void_v,
            ],
        );
        must("ip", &["-n", &void_ns, "link", "set", &void_v, "up"]);
        p(&["route", "add", "default", "via", &format!("10.99.{n}.2")]);
        for (i, nat) in nats.iter().enumerate() {
            let i = i + 1;
            let router = format!("peer-message-{pid}-r{n}x{i}");
            let ns = format!("peer-message-{pid}-h{n}x{i}");
            let uplink = format!("pmw{n}x{i}p");
            let wan_dev = format!("pmw{n}x{i}r");
            let lan_r = format!("pml{n}x{i}r");
            let lan_h = format!("pml{n}x{i}h");
            let wan_net = format!("10.{}.{n}", 80 + i);
            let lan_net = format!("10.{}.{n}", 90 + i);
            let home = Home {
                ns: ns.clone(),
                router: router.clone(),
                public_ns: public_ns.clone(),
                uplink: uplink.clone(),
            };
            must("ip", &["netns", "add", &router]);
            // Pushed at once: dropping the box deletes whatever was made so far.
            internet.homes.push(home);
            must("ip", &["netns", "add", &ns]);
            p(&[
                "link", "add", &uplink, "type", "veth", "peer", "name", &wan_dev, "netns", &router,
            ]);
            p(&["addr", "add", &format!("{wan_net}.1/24"), "dev", &uplink]);
            p(&["link", "set", &uplink, "up"]);
            let r = |args: &[&str]| {
                let mut all = vec!["-n", router.as_str()];
                all.extend_from_slice(args);
                must("ip", &all);
            };
            r(&["link", "set", "lo", "up"]);
            r(&["addr", "add", &format!("{wan_net}.2/24"), "dev", &wan_dev]);
            r(&["link", "set", &wan_dev, "up"]);
            r(&[
                "link", "add", &lan_r, "type", "veth", "peer", "name", &lan_h, "netns", &ns,
            ]);
            r(&["addr", "add", &format!("{lan_net}.1/24"), "dev", &lan_r]);
            r(&["link", "set", &lan_r, "up"]);
            r(&["route", "add", "default", "via", &format!("{wan_net}.1")]);
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    &router,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ],
            );
            let masquerade = match nat {
                Nat::Cone => "masquerade",
                Nat::Symmetric => "masquerade random",
                Nat::None => {
                    p(&[
                        "route",
                        "add",
                        &format!("{lan_net}.0/24"),
                        "via",
                        &format!("{wan_net}.2"),
                    ]);
                    ""
                }
            };
            // The input filter drops what nobody asked for, as a home router's firewall does.
            // It matters for hole punching: an unsolicited packet the router accepted (and
            // answered "port unreachable") would leave a conntrack entry on the very public port
            // its own peer's socket is mapped to, and masquerading would then move that
            // socket's next mapping to another port, as a symmetric NAT does.
            let rules = if *nat == Nat::None {
                String::new()
            } else {
                format!(
                    "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority 100;\n    oifname \"{wan_dev}\" {masquerade}\n  }}\n}}\n\
                 table ip filter {{\n  chain input {{\n    type filter hook input priority 0;\n    iifname \"{wan_dev}\" ct state new drop\n  }}\n}}\n"
                )
            };
            if let Err(e) = run(
                "ip",
                &["netns", "exec", &router, "nft", "-f", "-"],
                Some(&rules),
            ) {
                panic!("NAT setup failed: {e}");
            }
            let h = |args: &[&str]| {
                let mut all = vec!["-n", ns.as_str()];
                all.extend_from_slice(args);
                must("ip", &all);
            };
            h(&["link", "set", "lo", "up"]);
            h(&["addr", "add", &format!("{lan_net}.2/24"), "dev", &lan_h]);
            h(&["link", "set", &lan_h, "up"]);
            h(&["route", "add", "default", "via", &format!("{lan_net}.1")]);
            // webrtc-rs's mDNS socket needs a multicast route.
            h(&["route", "add", "224.0.0.0/4", "dev", &lan_h]);
        }
        internet
    }

    /// Starts coturn on [`Internet::public`]: STUN, and TURN with short-lived credentials
    /// (`use-auth-secret`, see `TurnCredentials::rest`). Returns once it listens.
    pub fn start_turn(&mut self) {
        let dir = std::env::temp_dir().join(format!(
            "peer-message-turn-{}-{}",
            std::process::id(),
            self.public
        ));
        std::fs::create_dir_all(&dir).expect("coturn's directory");
        let secret = format!("box-secret-{}", std::process::id());
        let port = self.turn_port.to_string();
        let pidfile = dir.join("turnserver.pid");
        let db = dir.join("turndb");
        let log = std::fs::File::create(dir.join("turnserver.log")).expect("coturn's log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.public_ns,
                "turnserver",
                "-n",
                "--listening-ip",
                &self.public,
                "--relay-ip",
                &self.public,
                "--listening-port",
                &port,
                "--use-auth-secret",
                "--static-auth-secret",
                &secret,
                "--realm",
                "box",
                "--fingerprint",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--min-port",
                "49152",
                "--max-port",
                "49999",
                "--log-file",
                "stdout",
                "--simple-log",
                "--pidfile",
            ])
            .arg(&pidfile)
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        self.turn = Some(child);
        self.turn_dir = Some(dir);
        self.turn_secret = Some(secret);
        let listening = format!("{}:{}", self.public, self.turn_port);
        let start = Instant::now();
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.public_ns, "ss", "-lnu"])
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&listening) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "coturn is not listening on {listening} after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The signaling server's port.
    pub const SIGNALING_PORT: u16 = 3536;

    /// Starts the signaling server in the public namespace with `spawn` (a process that listens
    /// on `PM_BIND` and says `LISTENING`); returns once it does.
    pub fn start_signaling(&mut self, spawn: fn(&str, &[(&str, String)]) -> crate::netns::Child) {
        let bind = format!("{}:{}", self.public, Self::SIGNALING_PORT);
        let child = spawn(&self.public_ns, &[("PM_BIND", bind)]);
        let start = Instant::now();
        while !child.said("LISTENING") {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the signaling server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signaling = Some(child);
    }

    /// The signaling server's URL.
    pub fn signaling_url(&self) -> String {
        format!("ws://{}:{}", self.public, Self::SIGNALING_PORT)
    }

    /// The STUN URL of the public server.
    pub fn stun_url(&self) -> String {
        format!("stun:{}:{}", self.public, self.turn_port)
    }

    /// The TURN URL of the public server.
    pub fn turn_url(&self) -> String {
        format!("turn:{}:{}", self.public, self.turn_port)
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        // Killed by its PID (the child's drop).
        self.signaling = None;
        if let Some(mut turn) = self.turn.take() {
            let _ = turn.kill();
            let _ = turn.wait();
        }
        if let Some(dir) = self.turn_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        for home in &self.homes {
            // Deleting a namespace deletes the veth ends in it, and their peers.
            let _ = run("ip", &["netns", "delete", &home.ns], None);
            let _ = run("ip", &["netns", "delete", &home.router], None);
        }
        let _ = run("ip", &["netns", "delete", &self.public_ns], None);
        let _ = run("ip", &["netns", "delete", &self.void_ns], None);
    }
}
