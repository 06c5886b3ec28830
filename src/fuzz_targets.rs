//! Bodies of the `cargo fuzz` targets (`fuzz/`), kept in the library so the
//! corpus replay test (`tests/fuzz_corpus.rs`) runs exactly the same code.
//! Only with the `fuzzing` feature: not part of the console's API.
//! Each must return normally for every input: a panic is a bug.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::config::{Config, ConfigFile, Edit, Switch};
use crate::relay::handshake::origin_request;
use crate::relay::{FrameScanner, parse_request};

const ROUTES: &str = r#"
[[domain]]
name = "app.test"
acceleration = "full-site"
origins = ["127.0.0.1:9001"]
websocket = { switch = "on", timeout = 60 }

[[domain]]
name = "localhost"
acceleration = "dynamic"
status = "offline"
origins = ["127.0.0.1:9001"]
"#;

fn routes() -> Option<&'static Arc<Config>> {
    static CONFIG: OnceLock<Option<Arc<Config>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Config::parse(ROUTES, Path::new("fuzz.toml"))
                .ok()
                .map(Arc::new)
        })
        .as_ref()
}

/// A client's request head: parse, route by Host, build the origin request.
pub fn handshake(data: &[u8]) {
    let Ok(Some((request, end))) = parse_request(data) else {
        return;
    };
    assert!(end <= data.len());
    if let Some(domain) = routes().and_then(|c| c.route(&request.host)) {
        let head = origin_request(domain, &request, ([127, 0, 0, 1], 1).into());
        assert!(head.ends_with(b"\r\n\r\n"));
    }
}

/// A config file: parse and validate; when valid, an edit round trip must
/// produce a file that still loads.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let Ok(file) = ConfigFile::from_text(Path::new("fuzz.toml"), text.to_string()) else {
        return;
    };
    if let Some(domain) = config.domains.first() {
        let edit = Edit::SetWebSocket {
            domain: domain.name.to_string(),
            switch: Some(Switch::Off),
            timeout: Some(30),
        };
        let mut doc = text.parse::<toml_edit::DocumentMut>().unwrap_or_default();
        if edit.apply(file.config(), &mut doc).is_ok() {
            let edited = doc.to_string();
            assert!(
                Config::parse(&edited, Path::new("fuzz.toml")).is_ok(),
                "an edit broke a valid file"
            );
        }
    }
}

/// Frame bytes in both directions, cut into chunks at the positions the
/// first bytes choose: forwarded ranges must stay in bounds and add up.
pub fn frames(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    for from_client in [true, false] {
        let mut scanner = FrameScanner::new(from_client, 1 << 16, cut & 1 == 1);
        let mut buf = vec![0u8; crate::relay::MAX_HEADER + rest.len()];
        let step = usize::from(cut).max(1);
        for chunk in rest.chunks(step) {
            let carry = scanner.copy_carry(&mut buf);
            buf[carry..carry + chunk.len()].copy_from_slice(chunk);
            let scan = scanner.scan(&buf[..carry + chunk.len()], |_| {});
            assert!(scan.forward <= carry + chunk.len());
            if scan.violation.is_some() || scan.close.is_some() {
                break;
            }
        }
    }
}
