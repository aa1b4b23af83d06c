//! A terminal chat: lines from stdin go to everyone in the room, reliably.
//!
//! ```text
//! cargo run --example chat -- host ROOM                          # embedded signaling on :3536
//! cargo run --example chat -- join ROOM --signal ws://ADDR:3536  # join that host
//! ```
//!
//! Options: `--name NAME` (shown to others), `--stun` (use public STUN; off by default so that
//! LAN and same-machine chats contact nobody), `--stun-server URL` (your own STUN server instead),
//! `--turn URL --turn-secret SECRET` (a TURN relay with coturn's `use-auth-secret`: the chat
//! makes itself short-lived credentials, as a game's backend would), `--echo` (answer every line
//! received with `echo: LINE` to its sender: a bot for trying a client, and the native host of
//! the browser tests). End stdin (Ctrl-D) to leave.
//!
//! `--diagnostics` logs the room's diagnostics (`PeerMessageDiagnosticsPlugin` with Bevy's
//! `LogDiagnosticsPlugin`) every 5 s.
//!
//! `/send FILE` sends a file (up to 16 MiB) to everyone: both sides draw its progress in the
//! terminal (from `TransferProgress`, with indicatif), and receivers save it under
//! `chat-downloads/`.
//!
//! A browser build joins the same room with the line type registered as `"chat.line"`.

use bevy::{app::ScheduleRunnerPlugin, prelude::*};
use bevy_peer_message::prelude::*;
use serde::{Deserialize, Serialize};
use std::{
    io::BufRead,
    sync::{Mutex, mpsc},
    time::Duration,
};

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Line {
    name: String,
    text: String,
}

/// A file sent with `/send`.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct File {
    name: String,
    bytes: Vec<u8>,
}

/// Files travel whole as one reliable message, up to this size.
const MAX_FILE: usize = 16 << 20;

enum Input {
    Line(String),
    Eof,
}

#[derive(Resource)]
struct Stdin(Mutex<mpsc::Receiver<Input>>);

#[derive(Resource)]
struct Me(String);

#[derive(Resource, Default)]
struct Leaving(Option<u32>);

struct Args {
    host: bool,
    room: String,
    signal: Option<String>,
    name: String,
    stun: bool,
    stun_server: Option<String>,
    turn: Option<(String, String)>,
    echo: bool,
    diagnostics: bool,
}

/// Whether to echo received lines back to their sender.
#[derive(Resource)]
struct Echo(bool);

fn usage() -> ! {
    eprintln!("usage: chat host ROOM [--signal ws://ADDR:PORT] [OPTIONS]");
    eprintln!("       chat join ROOM --signal ws://ADDR:PORT [OPTIONS]");
    eprintln!("options: --name NAME, --stun, --stun-server URL, --turn URL --turn-secret SECRET,");
    eprintln!("         --echo, --diagnostics");
    std::process::exit(2)
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let host = match it.next().as_deref() {
        Some("host") => true,
        Some("join") => false,
        _ => usage(),
    };
    let room = it.next().unwrap_or_else(|| usage());
    let mut args = Args {
        host,
        room,
        signal: None,
        name: if host { "host".into() } else { "guest".into() },
        stun: false,
        stun_server: None,
        turn: None,
        echo: false,
        diagnostics: false,
    };
    let mut turn_url = None;
    let mut turn_secret = None;
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--signal" => args.signal = Some(it.next().unwrap_or_else(|| usage())),
            "--name" => args.name = it.next().unwrap_or_else(|| usage()),
            "--stun" => args.stun = true,
            "--stun-server" => args.stun_server = Some(it.next().unwrap_or_else(|| usage())),
            "--turn" => turn_url = Some(it.next().unwrap_or_else(|| usage())),
            "--turn-secret" => turn_secret = Some(it.next().unwrap_or_else(|| usage())),
            "--echo" => args.echo = true,
            "--diagnostics" => args.diagnostics = true,
            _ => usage(),
        }
    }
    args.turn = match (turn_url, turn_secret) {
        (Some(url), Some(secret)) => Some((url, secret)),
        (None, None) => None,
        _ => usage(),
    };
    args
}

/// The ICE servers the options ask for.
fn ice_servers(args: &Args) -> IceServers {
    let mut ice = if args.stun {
        IceServers::public_stun()
    } else {
        IceServers::none()
    };
    if let Some(url) = &args.stun_server {
        ice = ice.with(IceServer::stun([url.clone()]));
    }
    if let Some((url, secret)) = &args.turn {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let creds = TurnCredentials::rest(secret.as_bytes(), &args.name, now + 3600);
        ice = ice.with(IceServer::turn(
            [url.clone()],
            creds.username,
            creds.credential,
        ));
    }
    ice
}

fn main() {
    if cfg!(target_arch = "wasm32") {
        eprintln!("the terminal chat reads stdin on a thread: native only");
        return;
    }
    let args = parse();
    let mut plugin = PeerMessagePlugin::default()
        .ice_servers(ice_servers(&args))
        // Room for a file and its name.
        .max_message_size(MAX_FILE + 4096);
    if let Some(url) = &args.signal {
        // A joiner (or a host using a stand-alone server) goes through this server.
        plugin = plugin.signaling(Signaling::server(url.clone()));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Input::Line(line)).is_err() {
                break;
            }
        }
        let _ = tx.send(Input::Eof);
    });
    let room = args.room.clone();
    let host = args.host;
    let diagnostics = args.diagnostics;
    let mut app = App::new();
    if diagnostics {
        use bevy::diagnostic::LogDiagnosticsPlugin;
        // Every diagnostic in the app: the room's and each peer's (`peer_message/peer/ID/...`).
        app.add_plugins((
            bevy::log::LogPlugin::default(),
            PeerMessageDiagnosticsPlugin,
            LogDiagnosticsPlugin {
                wait_duration: Duration::from_secs(5),
                ..default()
            },
        ));
    }
    app.add_plugins(
        MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_secs_f64(
            1.0 / 60.0,
        ))),
    )
    .add_plugins(plugin)
    .add_peer_message_named::<Line>("chat.line", Delivery::Reliable)
    .add_peer_message_named::<File>("chat.file", Delivery::Reliable)
    .insert_resource(Echo(args.echo))
    .insert_resource(Stdin(Mutex::new(rx)))
    .insert_resource(Me(args.name))
    .init_resource::<Leaving>()
    .add_systems(Startup, move |mut net: PeerMessage| {
        if host {
            net.host(room.clone())
        } else {
            net.join(room.clone())
        }
    })
    .add_systems(OnEnter(ConnectionState::Connected), |net: PeerMessage| {
        println!(
            "* in room {:?} as {} ({})",
            net.room().unwrap_or(""),
            net.id(),
            net.role().map_or("?".into(), |r| r.to_string())
        );
    })
    .add_systems(
        Update,
        (read_stdin, show, progress, save_files, lifecycle).chain(),
    )
    .run();
}

fn read_stdin(
    stdin: Res<Stdin>,
    me: Res<Me>,
    mut net: PeerMessage,
    mut leaving: ResMut<Leaving>,
    mut exit: MessageWriter<AppExit>,
) {
    if let Some(frames) = &mut leaving.0 {
        // Give the goodbyes a few frames to get out.
        *frames += 1;
        if *frames > 10 {
            exit.write(AppExit::Success);
        }
        return;
    }
    let Ok(rx) = stdin.0.lock() else { return };
    while let Ok(input) = rx.try_recv() {
        match input {
            Input::Line(text) if text.starts_with("/send ") => send_file(&mut net, &text[6..]),
            Input::Line(text) if !text.trim().is_empty() => {
                net.broadcast(Line {
                    name: me.0.clone(),
                    text,
                });
            }
            Input::Line(_) => {}
            Input::Eof => {
                println!("* leaving");
                net.leave();
                leaving.0 = Some(0);
                return;
            }
        }
    }
}

fn show(
    mut lines: MessageReader<Received<Line>>,
    echo: Res<Echo>,
    me: Res<Me>,
    mut net: PeerMessage,
) {
    for Received { from, message } in lines.read() {
        println!("<{} {from}> {}", message.name, message.text);
        if echo.0 {
            net.send(
                *from,
                Line {
                    name: me.0.clone(),
                    text: format!("echo: {}", message.text),
                },
            );
        }
    }
}

/// `/send FILE`: the file to everyone.
fn send_file(net: &mut PeerMessage, path: &str) {
    let path = std::path::Path::new(path.trim());
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() <= MAX_FILE => {
            println!("* sending {name} ({} bytes)", bytes.len());
            net.broadcast(File { name, bytes });
        }
        Ok(bytes) => println!("! {name}: {} bytes, more than {MAX_FILE}", bytes.len()),
        Err(e) => println!("! {}: {e}", path.display()),
    }
}

/// Received files go to `chat-downloads/`, under their base name only (a peer chooses it).
fn save_files(mut files: MessageReader<Received<File>>) {
    for Received { from, message } in files.read() {
        let base = std::path::Path::new(&message.name)
            .file_name()
            .map_or("file".into(), |n| n.to_string_lossy().into_owned());
        let dir = std::path::Path::new("chat-downloads");
        let target = dir.join(format!("{from}-{base}"));
        let saved =
            std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&target, &message.bytes));
        match saved {
            Ok(()) => println!("* {from} sent {base}: saved as {}", target.display()),
            Err(e) => println!("! saving {base} from {from}: {e}"),
        }
    }
}

/// A progress bar in the terminal (indicatif) for each file on its way, in or out.
#[cfg(not(target_arch = "wasm32"))]
fn progress(
    mut progress: MessageReader<TransferProgress>,
    mut bars: Local<
        std::collections::HashMap<(PeerId, TransferDirection, u64), indicatif::ProgressBar>,
    >,
) {
    for p in progress.read() {
        let key = (p.peer, p.direction, p.id);
        let bar = bars.entry(key).or_insert_with(|| {
            let arrow = match p.direction {
                TransferDirection::Sending => "->",
                TransferDirection::Receiving => "<-",
            };
            let bar = indicatif::ProgressBar::new(p.total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {percent:>3} % {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("#>-"));
            }
            bar.set_prefix(format!("{arrow} {}", p.peer));
            bar
        });
        bar.set_position(p.done as u64);
        if p.done == p.total {
            bar.finish();
            bars.remove(&key);
        }
    }
}

/// The browser build has no terminal.
#[cfg(target_arch = "wasm32")]
fn progress() {}

type Lifecycle<'w, 's> = (
    MessageReader<'w, 's, PeerConnected>,
    MessageReader<'w, 's, PeerReconnecting>,
    MessageReader<'w, 's, PeerReconnected>,
    MessageReader<'w, 's, PeerDisconnected>,
    MessageReader<'w, 's, PeerError>,
);

fn lifecycle(
    (mut connected, mut away, mut reconnected, mut disconnected, mut errors): Lifecycle,
    mut exit: MessageWriter<AppExit>,
    state: Res<State<ConnectionState>>,
    leaving: Res<Leaving>,
    mut was_in_room: Local<bool>,
) {
    for e in connected.read() {
        println!("* {} {} joined", e.role, e.peer);
    }
    for e in away.read() {
        println!("* {} went quiet; reconnecting", e.peer);
    }
    for e in reconnected.read() {
        println!("* {} is back after {:?}", e.peer, e.downtime);
    }
    for e in disconnected.read() {
        println!("* {} left ({:?})", e.peer, e.reason);
    }
    for e in errors.read() {
        println!("! {e}");
    }
    // A join that failed, or a host that went away: nothing left to do.
    if *state.get() != ConnectionState::Offline {
        *was_in_room = true;
    } else if *was_in_room && leaving.0.is_none() {
        println!("* offline");
        exit.write(AppExit::from_code(1));
    }
}
