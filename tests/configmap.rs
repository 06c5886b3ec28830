//! A config delivered as a Kubernetes ConfigMap volume: the file is a
//! symlink through `..data`, and an update swaps `..data` atomically to a
//! new timestamped directory (as the kubelet's AtomicWriter does). The
//! running relay applies the new content without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod serve_process;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::*;
use ecdn_console::origin::OriginOptions;
use serve_process::ServeProcess;

fn config_text(origin: std::net::SocketAddr, timeout: u32) -> String {
    format!(
        "[relay]\nlisten = \"127.0.0.1:0\"\n\n[[domain]]\nname = \"app.test\"\nacceleration = \"full-site\"\n\
         origins = [\"{origin}\"]\nwebsocket = {{ switch = \"on\", timeout = {timeout} }}\n"
    )
}

/// Writes `text` into a new `..<stamp>` directory and points `..data` at it
/// with a rename (atomic), then removes the old directory.
fn kubelet_update(volume: &Path, stamp: &str, text: &str, old: Option<&str>) {
    let data_dir = volume.join(stamp);
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::write(data_dir.join("ecdn-console.toml"), text).unwrap();
    let tmp = volume.join("..data_tmp");
    symlink(stamp, &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(volume.join(old)).unwrap();
    }
}

#[tokio::test]
async fn a_configmap_update_is_applied_to_the_running_relay() {
    let origin = echo_origin(OriginOptions::default()).await;
    let volume = tempfile::tempdir().unwrap();
    kubelet_update(
        volume.path(),
        "..2026_12_01_10_00_00.1",
        &config_text(origin, 100),
        None,
    );
    let path = volume.path().join("ecdn-console.toml");
    symlink("..data/ecdn-console.toml", &path).unwrap();
    let mut serve = ServeProcess::start(&path, &["--admin", "127.0.0.1:0"], &[]).await;
    let mut client = connect(serve.addr, "app.test").await;

    kubelet_update(
        volume.path(),
        "..2026_12_01_10_01_00.2",
        &config_text(origin, 1),
        Some("..2026_12_01_10_00_00.1"),
    );
    serve
        .line_within("reloaded (file changed)", Duration::from_secs(5))
        .await;
    let (_, metrics) = serve.admin_request("GET", "/metrics").await;
    let limit: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ecdn_relay_idle_limit_seconds{domain=\"app.test\"} "))
        .unwrap_or_else(|| panic!("no idle limit in {metrics}"))
        .parse()
        .unwrap();
    assert_eq!(limit, 1.0);
    // The live session is under the new 1 s limit.
    let close = tokio::time::timeout(Duration::from_secs(3), next_close(&mut client))
        .await
        .expect("cut under the new limit")
        .expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    serve.signal("TERM");
    assert_eq!(serve.exit_code(Duration::from_secs(5)).await, Some(0));
}
