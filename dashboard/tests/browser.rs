//! The page in a real browser: headless Chromium (Debian's `chromium`) loads
//! it, the charts render, the KPI numbers shown equal the API's, and a
//! screenshot is saved under the target directory for review.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use shopstream_testkit::database_url;
use support::{dashboard, filled, get_json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Install Debian's chromium (and a font) unless present; the script is
/// idempotent and serialised, so parallel tests may all call it.
fn install_chromium() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-browser.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/install-browser.sh");
    assert!(
        out.status.success() && Path::new(CHROMIUM).exists(),
        "cannot install Debian's chromium:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chromium(profile: &Path, width: u32, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // Let the page's timers and fetches run before dumping.
            "--virtual-time-budget=15000",
        ])
        // Tall enough for the whole page in one screenshot.
        .arg(format!("--window-size={width},2700"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The `data-value` of a KPI card in the dumped DOM.
fn kpi(dom: &str, name: &str) -> String {
    let card = dom
        .split(&format!("data-kpi=\"{name}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no KPI card {name}"));
    let value = card
        .split("data-value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("KPI {name} has no value yet"));
    value[..value.find('"').unwrap()].to_string()
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_renders_charts_and_shows_the_apis_numbers() {
    let w = filled("dash_browser", 6_000).await;
    let (_d, base) = dashboard(&w.schema.name, &database_url());
    let url = format!("{base}/");
    let profile = tempfile::tempdir().unwrap();
    install_chromium();

    let out = tokio::task::spawn_blocking({
        let (profile, url) = (profile.path().to_path_buf(), url.clone());
        move || chromium(&profile, 1440, &["--dump-dom"], &url)
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page never finished loading:\n{}",
        &dom[..dom.len().min(3000)]
    );
    assert_eq!(dom.matches("<canvas").count(), 9, "nine charts");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    assert!(
        dom.contains(&format!("<tbody id=\"cohorts\"><tr><td>{month}</td>")),
        "this month's cohort is in the cohort table"
    );
    let banner = dom
        .split("id=\"banner\"")
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .expect("the page has a banner element");
    assert!(
        banner.contains("hidden") && banner.ends_with('>'),
        "no error banner is shown: {banner}"
    );
    assert!(dom.contains("<tr title=\"P"), "the top products table is filled");

    let summary = get_json(&base, "/api/summary?window=60");
    let current = &summary["current"];
    for (name, field) in [
        ("revenue", "revenue"),
        ("orders", "orders"),
        ("average_order_value", "average_order_value"),
        ("units", "units"),
        ("discounts", "discounts"),
    ] {
        let api = match &current[field] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(kpi(&dom, name), api, "KPI {name} on the page equals the API");
    }
    assert_eq!(
        current["revenue"].as_str().unwrap(),
        w.summary.net_revenue.to_string()
    );

    // Legible at a laptop's and a desktop's width: saved for review.
    for width in [1280, 1920] {
        let shot = target_dir().join(format!("dashboard-{width}.png"));
        let out = tokio::task::spawn_blocking({
            let (profile, url, shot) = (profile.path().to_path_buf(), url.clone(), shot.clone());
            move || {
                chromium(
                    &profile,
                    width,
                    &[&format!("--screenshot={}", shot.display())],
                    &url,
                )
            }
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 50_000,
            "a real screenshot at {} ({size} bytes)",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
}
