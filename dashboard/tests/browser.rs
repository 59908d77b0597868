//! The page in a real browser: headless Chromium (Debian's `chromium`),
//! driven over the DevTools protocol, visits each page, applies a country
//! filter and a time range through the page's own controls, checks that the
//! KPI cards change and equal the API, walks back with the history, follows
//! a shared URL, pages and exports the order table, and saves a screenshot
//! of each page at 1280 and 1920 px under the target directory for review.

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::{AddScriptToEvaluateOnNewDocument, CaptureScreenshotFormatOption};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use shopstream_testkit::{database_url, pg};
use support::{dashboard, filled, get, get_json};

const CHROMIUM: &str = "/usr/bin/chromium";
const PAGES: [&str; 4] = ["overview", "time", "orders", "customers"];
const WAIT: Duration = Duration::from_secs(30);

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

fn browser(width: u32) -> Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .sandbox(false)
        .window_size(Some((width, 2400)))
        .idle_browser_timeout(Duration::from_secs(300))
        .args(vec![
            OsStr::new("--disable-gpu"),
            OsStr::new("--disable-dev-shm-usage"),
            OsStr::new("--hide-scrollbars"),
        ])
        .build()
        .expect("launch options");
    Browser::new(options).expect("chromium starts")
}

/// Evaluate `js` in the page and return its value (primitives only: wrap
/// anything else in `JSON.stringify`).
fn eval(tab: &Tab, js: &str) -> Value {
    tab.evaluate(js, true)
        .unwrap_or_else(|e| panic!("{js}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

/// Wait until the page has shown `page?filters` (set after every panel rendered).
fn wait_shown(tab: &Tab, shown: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = eval(tab, "document.body.dataset.shown || ''");
        if now == shown {
            return;
        }
        let banner = eval(
            tab,
            "document.getElementById('banner').hidden ? '' : document.getElementById('banner').textContent",
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the page never showed {shown:?} (it shows {now}; banner: {banner})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Choose `value` in the filter `name`, as a user does (a change event).
fn choose(tab: &Tab, name: &str, value: &str) {
    eval(
        tab,
        &format!(
            "(() => {{ const s = document.querySelector('#filters select[name={name}]');
                       s.value = {value:?}; s.dispatchEvent(new Event('change', {{ bubbles: true }})); }})()"
        ),
    );
}

fn click(tab: &Tab, selector: &str) {
    tab.wait_for_element(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// The KPI cards' values, as the page holds them (`data-value`).
fn kpis(tab: &Tab) -> Vec<String> {
    ["revenue", "orders", "average_order_value", "units", "discounts"]
        .iter()
        .map(|k| {
            eval(
                tab,
                &format!("document.querySelector('.kpi[data-kpi={k}] .value').dataset.value"),
            )
            .as_str()
            .unwrap_or_default()
            .to_string()
        })
        .collect()
}

/// The same figures from the API.
fn api_kpis(base: &str, query: &str) -> Vec<String> {
    let s = get_json(base, &format!("/api/summary?{query}"));
    ["revenue", "orders", "average_order_value", "units", "discounts"]
        .iter()
        .map(|k| match &s["current"][k] {
            Value::String(v) => v.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn screenshot(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    assert!(
        png.len() > 50_000,
        "a real screenshot of {name} ({} bytes)",
        png.len()
    );
    let path = target_dir().join(format!("dashboard-{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_filter_share_page_and_export_like_the_api() {
    let w = filled("dash_browser", 8_000).await;
    let s = w.schema.name.clone();
    let (_d, base) = dashboard(&s, &database_url());
    install_chromium();
    let country: String = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            pg().query_one(
                &format!(
                    "SELECT c.country FROM \"{s}\".fact_sales JOIN \"{s}\".dim_customer c USING (customer_key)
                     GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
                ),
                &[],
            )
            .unwrap()
            .get(0)
        }
    })
    .await
    .unwrap();
    let net = w.summary.net_revenue.to_string();
    tokio::task::spawn_blocking(move || browse(&base, &country, &net))
        .await
        .unwrap();
}

fn browse(base: &str, country: &str, net: &str) {
    let b = browser(1280);
    let tab = b.new_tab().expect("a tab");
    // The page runs under the dashboard's strict Content-Security-Policy:
    // anything it blocks while we browse is a broken chart or control. The
    // listener is in place before the page's first byte.
    tab.call_method(AddScriptToEvaluateOnNewDocument {
        source: "window.cspViolations = []; document.addEventListener('securitypolicyviolation', \
                 e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
            .into(),
        world_name: None,
        include_command_line_api: None,
        run_immediately: None,
    })
    .expect("watch for blocked content");
    tab.navigate_to(&format!("{base}/")).expect("open the page");
    wait_shown(&tab, "overview?range=all");
    let all = kpis(&tab);
    assert_eq!(all, api_kpis(base, "range=all"), "the cards equal the API");
    assert_eq!(all[0], net, "the revenue card is the generator's audit");
    assert_eq!(
        eval(
            &tab,
            "[...document.querySelectorAll('section.page:not([hidden]) canvas')].length"
        ),
        6,
        "the overview's six charts"
    );
    assert_eq!(
        eval(&tab, "document.getElementById('banner').hidden"),
        true,
        "no error banner"
    );

    // A country through the filter bar: the cards change, the URL says so.
    choose(&tab, "country", country);
    let query = format!("range=all&country={country}");
    wait_shown(&tab, &format!("overview?{query}"));
    let by_country = kpis(&tab);
    assert_eq!(by_country, api_kpis(base, &query));
    assert_ne!(by_country, all, "the country filter changed the cards");
    assert!(
        eval(&tab, "location.search")
            .as_str()
            .unwrap()
            .contains(&format!("country={country}")),
        "the filter is in the URL"
    );

    // A time range on top.
    choose(&tab, "range", "1h");
    let query = format!("range=1h&country={country}");
    wait_shown(&tab, &format!("overview?{query}"));
    assert_eq!(kpis(&tab), api_kpis(base, &query));
    assert!(
        eval(
            &tab,
            "document.querySelector('.kpi[data-kpi=revenue] .change').textContent"
        )
        .as_str()
        .unwrap()
        .contains("previous hour"),
        "the cards compare with the hour before"
    );

    // Every page under the filters, then back through the history.
    for page in PAGES {
        click(&tab, &format!(".tabs a[data-page={page}]"));
        wait_shown(&tab, &format!("{page}?{query}"));
        let charts = eval(
            &tab,
            "[...document.querySelectorAll('section.page:not([hidden]) canvas')].length",
        );
        assert!(charts.as_u64().unwrap() >= 3, "{page}: {charts} charts");
    }
    eval(&tab, "history.back()");
    wait_shown(&tab, &format!("orders?{query}"));
    eval(&tab, "history.go(-4)");
    wait_shown(&tab, &format!("overview?range=all&country={country}"));
    assert_eq!(
        eval(
            &tab,
            "document.querySelector('#filters select[name=range]').value"
        ),
        "all"
    );
    assert_eq!(kpis(&tab), by_country, "back to the country view");

    // A shared link opens exactly its view.
    let shared = b.new_tab().expect("a tab");
    shared
        .navigate_to(&format!("{base}/?page=orders&range=24h&device=mobile"))
        .expect("open the shared link");
    wait_shown(&shared, "orders?range=24h&device=mobile");
    assert_eq!(kpis(&shared), api_kpis(base, "range=24h&device=mobile"));
    assert_eq!(
        eval(
            &shared,
            "document.querySelector('#filters select[name=device]').value"
        ),
        "mobile"
    );

    // The product table's CSV is the table shown.
    eval(
        &shared,
        "window.__csv = null; const make = URL.createObjectURL;
         URL.createObjectURL = blob => { blob.text().then(t => window.__csv = t); return make(blob); }",
    );
    click(&shared, "button.export[data-table=products]");
    let deadline = std::time::Instant::now() + WAIT;
    let csv = loop {
        if let Value::String(text) = eval(&shared, "window.__csv") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no CSV was made");
        std::thread::sleep(Duration::from_millis(50));
    };
    let shown_rows = eval(&shared, "document.querySelectorAll('#products tr').length")
        .as_u64()
        .unwrap();
    assert!(csv.starts_with("product_id,name,category"), "{csv}");
    assert_eq!(
        csv.lines().count() as u64,
        shown_rows + 1,
        "a header and one line per product shown"
    );

    // The order-line table: page 2 is the API's page after page 1.
    tab.navigate_to(&format!("{base}/?page=customers"))
        .expect("open the customers page");
    wait_shown(&tab, "customers?range=all");
    let first_page = get_json(base, "/api/orders/lines?limit=25&range=all");
    let ids = |tab: &Tab| -> Value {
        let text = eval(
            tab,
            "JSON.stringify([...document.querySelectorAll('#lines tr td:nth-child(2)')].map(td => td.title))",
        );
        serde_json::from_str(text.as_str().unwrap()).unwrap()
    };
    let order_ids = |page: &Value| -> Value {
        page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["order_id"].clone())
            .collect()
    };
    assert_eq!(ids(&tab), order_ids(&first_page));
    // Below the fold: a DOM click (the protocol's mouse click waits for the
    // element to scroll into a viewport it never reaches here).
    eval(&tab, "document.getElementById('lines-older').click()");
    let deadline = std::time::Instant::now() + WAIT;
    while eval(&tab, "document.getElementById('lines-page').textContent") != "page 2" {
        assert!(std::time::Instant::now() < deadline, "never reached page 2");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_shown(&tab, "customers?range=all");
    let next = first_page["next"].as_str().expect("more than one page");
    let second = get_json(
        base,
        &format!("/api/orders/lines?limit=25&range=all&after={next}"),
    );
    assert_eq!(ids(&tab), order_ids(&second), "page 2 is the API's next page");
    // The export link carries the filters; the server's CSV holds every line.
    let href = eval(&tab, "document.getElementById('lines-csv').getAttribute('href')");
    let href = href.as_str().unwrap();
    assert!(href.starts_with("/api/orders/lines.csv?range=all"), "{href}");
    let (status, csv) = get(base, href);
    assert_eq!(status, 200);
    let total: usize = get_json(base, "/api/summary?range=all")["current"]["orders"]
        .as_u64()
        .unwrap() as usize;
    assert!(
        csv.lines().count() > total,
        "every line of every order: {} rows",
        csv.lines().count()
    );

    assert_eq!(
        eval(&tab, "JSON.stringify(window.cspViolations)"),
        "[]",
        "nothing the page needs is blocked by its Content-Security-Policy"
    );

    // Screenshots of every page, at a laptop's and a desktop's width.
    drop(tab);
    drop(shared);
    drop(b);
    for width in [1280, 1920] {
        let b = browser(width);
        let tab = b.new_tab().expect("a tab");
        for page in PAGES {
            tab.navigate_to(&format!("{base}/?page={page}"))
                .expect("open the page");
            wait_shown(&tab, &format!("{page}?range=all"));
            screenshot(&tab, &format!("{page}-{width}"));
        }
    }
}
