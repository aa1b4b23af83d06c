//! What the box games share: the command line (native) and query string (web) (`host`/`join`,
//! the room, `--signal URL`, `--auto`), the HUD's text, the keys. Shared by `box_game` and
//! `replicon_boxes`.

use bevy::{prelude::*, window::WindowResolution};
use bevy_peer_message::prelude::*;

/// What to do, from the command line (native) or the page's query string (web).
#[derive(Resource, Clone, Debug)]
pub struct Options {
    pub host: bool,
    pub room: String,
    pub signal: Option<String>,
    pub auto: bool,
}

impl Options {
    /// The options, or the usage and exit code 2.
    pub fn or_exit(example: &str) -> Self {
        Self::from_environment().unwrap_or_else(|e| {
            eprintln!("{e}");
            eprintln!("usage: {example} host [ROOM] [--signal URL] [--auto]");
            eprintln!("       {example} join [ROOM] --signal ws://ADDR:3536 [--auto]");
            std::process::exit(2);
        })
    }

    /// The window: 800×600, in the page's `#box-game` canvas on the web.
    pub fn window(&self, example: &str) -> WindowPlugin {
        WindowPlugin {
            primary_window: Some(Window {
                title: format!("{example}: {}", self.room),
                resolution: WindowResolution::new(800, 600),
                canvas: Some("#box-game".into()),
                fit_canvas_to_parent: true,
                prevent_default_event_handling: true,
                ..default()
            }),
            ..default()
        }
    }

    /// The plugin these options ask for: no ICE servers (the demos run on one machine or a
    /// LAN), signaling at `--signal` if given (else the embedded server natively).
    pub fn plugin(&self) -> PeerMessagePlugin {
        let plugin = PeerMessagePlugin::default().ice_servers(IceServers::none());
        match &self.signal {
            Some(url) => plugin.signaling(Signaling::server(url.clone())),
            None => plugin,
        }
    }

    fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut options = Options {
            host: true,
            room: "arena".into(),
            signal: None,
            auto: false,
        };
        let mut words = words.into_iter().peekable();
        match words.next() {
            Some("host") => options.host = true,
            Some("join") => options.host = false,
            other => return Err(format!("expected host or join, got {other:?}")),
        }
        if let Some(room) = words.next_if(|w| !w.starts_with("--")) {
            options.room = room.into();
        }
        while let Some(word) = words.next() {
            match word {
                "--signal" => options.signal = words.next().map(str::to_owned),
                "--auto" => options.auto = true,
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(options)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_environment() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Self::parse(args.iter().map(String::as_str))
    }

    /// `?host&room=arena&signal=ws://127.0.0.1:3536&auto` (or `?join...`).
    #[cfg(target_arch = "wasm32")]
    pub fn from_environment() -> Result<Self, String> {
        let search = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .unwrap_or_default();
        let mut words: Vec<String> = vec![];
        let (mut room, mut signal, mut auto) = (None, None, false);
        for pair in search.trim_start_matches('?').split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = js_sys::decode_uri_component(value)
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_else(|| value.to_owned());
            match key {
                "host" | "join" => words.insert(0, key.to_owned()),
                "room" => room = Some(value),
                "signal" => signal = Some(value),
                "auto" => auto = true,
                _ => {}
            }
        }
        if words.is_empty() {
            words.push("host".into());
        }
        if let Some(room) = room {
            words.push(room);
        }
        words.push("--signal".into());
        words.push(signal.unwrap_or_else(|| "ws://127.0.0.1:3536".into()));
        if auto {
            words.push("--auto".into());
        }
        Self::parse(words.iter().map(String::as_str))
    }
}

/// The HUD's text node, top left (add a marker to find it).
pub fn hud_text() -> impl Bundle {
    (
        Text::new("starting"),
        TextFont {
            font_size: FontSize::Px(16.0),
            ..default()
        },
        Node {
            position_type: PositionType::Absolute,
            top: Val::Px(8.0),
            left: Val::Px(8.0),
            ..default()
        },
    )
}

/// Hosts or joins the room the options name, and logs it as `EXAMPLE: hosting room ...`.
pub fn enter_room(options: &Options, net: &mut PeerMessage, example: &str) {
    if options.host {
        net.host(options.room.clone());
    } else {
        net.join(options.room.clone());
    }
    info!(
        "{example}: {} room {:?} as {}",
        if options.host { "hosting" } else { "joining" },
        options.room,
        net.id()
    );
}

/// Arrows or WASD, as a direction of length 1 (or zero).
pub fn key_direction(keys: &ButtonInput<KeyCode>) -> Vec2 {
    let mut direction = Vec2::ZERO;
    for (key, step) in [
        (KeyCode::ArrowLeft, Vec2::NEG_X),
        (KeyCode::KeyA, Vec2::NEG_X),
        (KeyCode::ArrowRight, Vec2::X),
        (KeyCode::KeyD, Vec2::X),
        (KeyCode::ArrowUp, Vec2::Y),
        (KeyCode::KeyW, Vec2::Y),
        (KeyCode::ArrowDown, Vec2::NEG_Y),
        (KeyCode::KeyS, Vec2::NEG_Y),
    ] {
        if keys.pressed(key) {
            direction += step;
        }
    }
    direction.normalize_or_zero()
}
