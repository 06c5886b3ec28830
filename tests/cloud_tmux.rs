//! End to end: `ecdn-console cloud` in a real terminal (tmux, 80×24)
//! against the loopback stand-in for the Tencent Cloud API
//! (tests/fake_api): the account's domains are listed page by page, and
//! the console's steps — Domain Management → filter → Manage → Advanced →
//! edit — send an UpdateDomainConfig with the whole WebSocket object.
//! Skips with a note when tmux is not installed (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_api;
mod tmux;

use tmux::{Tmux, shell_quote, tmux_available};

use fake_api::{FakeApi, SECRET_ID, SECRET_KEY, detail_domain};
use serde_json::json;

#[test]
fn the_console_lists_the_account_and_an_edit_sends_the_update() {
    if !tmux_available() {
        eprintln!("note: tmux is not installed; skipping the cloud console test");
        return;
    }
    // More than a page, so the list is the result of paging. The domain
    // edited is `localhost`, so that the probe stays on this machine.
    let mut domains = vec![detail_domain("localhost", "dynamic", Some(("off", 60)))];
    domains.extend((0..119).map(|i| detail_domain(&format!("d{i:03}.example.com"), "web", None)));
    let api = FakeApi::start(domains);
    let home = tempfile::tempdir().unwrap();
    let command = format!(
        "HOME={home} ECDN_CONSOLE_LOG={log} TENCENTCLOUD_SECRET_ID={id} TENCENTCLOUD_SECRET_KEY={key} \
         {bin} cloud --endpoint {endpoint}",
        home = shell_quote(&home.path().display().to_string()),
        log = shell_quote(&home.path().join("console.log").display().to_string()),
        id = shell_quote(SECRET_ID),
        key = shell_quote(SECRET_KEY),
        bin = shell_quote(env!("CARGO_BIN_EXE_ecdn-console")),
        endpoint = shell_quote(&api.endpoint()),
    );
    let tmux = Tmux::start(format!("ecdn-e2e-cloud-{}", std::process::id()), &command);
    let screen = tmux.wait_for("Tencent Cloud");
    assert!(screen.contains(&api.endpoint()), "{screen}");

    // Domain Management: every page, then the filter narrows to one.
    tmux.keys(&["j"]);
    tmux.wait_for("▸Domain Management");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("120 domains from");
    assert!(
        screen.contains("localhost") && screen.contains("Off · 15 s"),
        "{screen}"
    );
    assert_eq!(
        api.requests()
            .iter()
            .map(|r| r.body["Offset"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 100]
    );
    tmux.keys(&["/", "l", "o", "c", "a", "l", "Enter"]);
    tmux.wait_for("1 of 120 domains");

    // Manage → Advanced Configuration: the card, then the edit dialog.
    tmux.keys(&["Enter"]);
    tmux.wait_for("Basic");
    tmux.keys(&["Tab", "Tab"]);
    let screen = tmux.wait_for("WebSocket timeout");
    assert!(screen.contains("probe the edge"), "{screen}");
    tmux.keys(&["e"]);
    tmux.wait_for("Draft");
    tmux.keys(&["Space", "9", "0"]);
    tmux.wait_for("Draft  On · 90 s");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("Tencent Cloud accepted");
    assert!(screen.contains("90 s"), "{screen}");
    assert_eq!(
        api.updates(),
        [json!({"Domain": "localhost", "WebSocket": {"Switch": "on", "Timeout": 90}})]
    );

    // p probes wss://localhost/ silently: nothing listens on its port 443
    // here, and the page says so beside the configured timeout.
    tmux.keys(&["p"]);
    let screen = tmux.wait_for("could not connect");
    assert!(
        screen.contains("Configured") && screen.contains("90 s"),
        "{screen}"
    );

    // Live Sessions says where sessions can be seen (Esc: out of Manage,
    // the filter cleared, to the menu).
    tmux.keys(&["Escape", "Escape", "Escape", "3"]);
    let screen = tmux.wait_for("visible only through a relay");
    assert!(!screen.contains(SECRET_KEY));
    tmux.keys(&["C-c"]);
    tmux.wait_until_gone();
}
