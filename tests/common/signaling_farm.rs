//! Signaling servers as our own child processes on loopback, and Debian's nginx in front of
//! them (the README's recipe): shared by the scale-out test and the signaling load bench.
//! Everything started here is stopped by PID when dropped.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A child process, killed by PID when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback address.
pub fn free_addr() -> SocketAddr {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET path`: the whole response (empty if nothing answers).
pub fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: farm\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// A value from a server's `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `peer-message-signaling` binary behind a proxy (clients counted by `X-Real-IP`), at most
/// `per_ip` connections per address, once it serves.
pub fn signaling_instance(per_ip: usize) -> (Process, SocketAddr) {
    let addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_peer-message-signaling"))
        .args(["--bind", &addr.to_string(), "--drain-secs", "0"])
        .args(["--behind-proxy", "true"])
        .args(["--max-connections-per-ip", &per_ip.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("the signaling binary");
    let process = Process(child);
    wait_until("a signaling instance up", || {
        get(addr, "/healthz").contains("ok")
    });
    (process, addr)
}

/// Whether Debian's `nginx` is installed (`.ci/run` installs it).
pub fn nginx_present() -> bool {
    Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// nginx in front of `upstreams`, routing each room (the path) to one of them, with its files
/// in a fresh directory; its address. The directory goes with it.
pub struct Nginx {
    _process: Process,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(upstreams: &[SocketAddr]) -> Nginx {
        let dir = std::env::temp_dir().join(format!(
            "pm-nginx-{}-{}",
            std::process::id(),
            free_addr().port()
        ));
        std::fs::create_dir_all(&dir).expect("nginx directory");
        let addr = free_addr();
        let conf = config(upstreams, addr, &dir);
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .args([
                "-p",
                &dir.display().to_string(),
                "-c",
                &path.display().to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let process = Process(child);
        wait_until("nginx up", || TcpStream::connect(addr).is_ok());
        Nginx {
            _process: process,
            addr,
            dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The README's nginx recipe (without TLS), for a private instance in `dir`.
fn config(upstreams: &[SocketAddr], addr: SocketAddr, dir: &Path) -> String {
    let servers: String = upstreams
        .iter()
        .map(|u| format!("    server {u} max_fails=1 fail_timeout=30s;\n"))
        .collect();
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
worker_rlimit_nofile 20000;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream signaling {{
    hash $request_uri consistent;
{servers}  }}
  server {{
    listen {addr};
    location / {{
      proxy_pass http://signaling;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection \"upgrade\";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_read_timeout 120s;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
    }}
  }}
}}
"
    )
}
