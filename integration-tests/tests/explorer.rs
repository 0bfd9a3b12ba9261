//! The log explorer in a real headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` over WebDriver), against a producer, consumer and gateway on the
//! real Kafka and PostgreSQL: the overview, scrolling to the next page, zooming by
//! dragging across the histogram, live events held back while the reader is scrolled
//! down, search, a level filter, the live tail (through a gateway restart, without a
//! duplicate), an event's details, the correlation link, a link reproducing the view,
//! the empty and "gateway down" states, and a phone-width layout. Screenshots go to
//! `EXPLORER_SCREENSHOTS` (default `target/screenshots`); the README shows one.

#[path = "api/helpers.rs"]
mod helpers;

use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use helpers::{
    create_topic, eventually, get_json, post_json, rows_for_source, spawn_consumer_with,
    spawn_gateway, spawn_producer, unique, Running,
};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `chromedriver` on a free loopback port, killed (by its pid) when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (./setup.sh installs Debian's chromium-driver)");
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800"],
            }),
        );
        eventually(
            "chromedriver to accept a session",
            Duration::from_secs(30),
            || {
                let capabilities = capabilities.clone();
                async move {
                    ClientBuilder::native()
                        .capabilities(capabilities)
                        .connect(&self.url)
                        .await
                        .ok()
                }
            },
        )
        .await
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("EXPLORER_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"));
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
}

/// Clicks the element `locator` finds, as a person would (WebDriver's element click).
async fn click(browser: &Client, locator: Locator<'_>, what: &str) {
    browser
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("{what} is on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{what} can be clicked: {e}"));
}

/// Runs `script` (a function body that returns a value) in the page.
async fn page_value(browser: &Client, script: &str) -> Value {
    browser
        .execute(script, Vec::new())
        .await
        .expect("script runs")
}

/// Waits until `script` returns `want`, failing with what it last returned.
async fn until_page(browser: &Client, what: &str, script: &str, want: Value) {
    let started = Instant::now();
    loop {
        let value = page_value(browser, script).await;
        if value == want {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!("timed out waiting for {what}: `{script}` is {value}, not {want}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ROW_MESSAGES: &str =
    "return [...document.querySelectorAll('#events li .text')].map(e => e.textContent)";

async fn messages_shown(browser: &Client) -> Vec<String> {
    serde_json::from_value(page_value(browser, ROW_MESSAGES).await).expect("strings")
}

async fn ingest(producer: &Running, event: Value) {
    let (status, body) = post_json(
        format!("{}/producer/api/logs/ingest", producer.base),
        &event,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn gateway_on(port: u16, topic: &str, group: &str) -> Running {
    let (topic, group) = (topic.to_owned(), group.to_owned());
    spawn_gateway(move |s| {
        s.http.port = Some(port);
        s.tail.topic = topic;
        s.tail.group_id = group;
    })
    .await
}

#[tokio::test]
async fn the_explorer_searches_filters_tails_through_a_restart_and_shows_details() {
    let (topic, dlq, group) = (
        unique("explorer"),
        unique("explorer-dlq"),
        unique("explorer-group"),
    );
    create_topic(&topic, 3).await;
    create_topic(&dlq, 1).await;
    let _consumer = spawn_consumer_with(&topic, &dlq, &group, |s| s.consumer.writers = 2).await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| s.kafka.topic = producer_topic).await;
    let gateway = gateway_on(0, &topic, &group).await;
    let port: u16 = gateway
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the gateway's port");

    // Six events with a word no other test uses; one ERROR carries a correlation id.
    let marker = format!("mk{}", uuid::Uuid::new_v4().simple());
    let source = unique("explorer-src");
    let correlation = unique("corr");
    for (i, level) in ["INFO", "INFO", "WARN", "ERROR", "INFO", "ERROR"]
        .iter()
        .enumerate()
    {
        let mut event = json!({"level": level, "source": source,
            "message": format!("checkout {marker} step {i}"),
            "metadata": {"duration": 12.5 + i as f64, "region": "eu-west-1"}});
        if i == 5 {
            event["correlationId"] = json!(correlation);
        }
        ingest(&producer, event).await;
    }
    // Background traffic over the last hour, shaped like real logs (mostly INFO, a few
    // busy sources), so the overview has something to show.
    let sources = [
        "checkout",
        "checkout",
        "checkout",
        "auth",
        "auth",
        "inventory",
        "payments",
    ];
    let levels = ["INFO"; 14]
        .into_iter()
        .chain(["DEBUG", "DEBUG", "WARN", "WARN", "ERROR", "FATAL"])
        .collect::<Vec<_>>();
    let now = chrono::Utc::now();
    let background: Vec<Value> = (0..400u32)
        .map(|i| {
            let level = levels[(i as usize * 7) % levels.len()];
            let minutes_ago = f64::from(i % 60) * (1.0 + f64::from(i % 3)) / 3.0;
            json!({"level": level, "source": format!("{}-{source}", sources[i as usize % sources.len()]),
                "message": format!("{} request {i} handled", level.to_lowercase()),
                "timestamp": now - chrono::Duration::seconds((minutes_ago * 60.0) as i64),
                "metadata": {"duration": f64::from(i % 97) * 1.7}})
        })
        .collect();
    let (status, body) = post_json(
        format!("{}/producer/api/logs/batch", producer.base),
        &background,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let search = &format!("{}/gateway/api/query/search?query={marker}", gateway.base);
    eventually(
        "the six events to be searchable",
        Duration::from_secs(60),
        || async move {
            let (_, page) = get_json(search).await;
            (page["totalElements"] == 6).then_some(())
        },
    )
    .await;

    let driver = ChromeDriver::start();
    let browser = driver.browser().await;
    browser.set_window_size(1280, 800).await.expect("1280×800");
    browser
        .goto(&format!("{}/gateway/ui/?range=1h", gateway.base))
        .await
        .expect("open the explorer");
    until_page(
        &browser,
        "the first page of everything",
        "return document.querySelectorAll('#events li').length",
        json!(100),
    )
    .await;
    until_page(
        &browser,
        "the histogram",
        "return document.querySelectorAll('#histogram rect').length > 10",
        json!(true),
    )
    .await;
    screenshot(&browser, "explorer-overview.png").await;

    // Scrolling to the end loads the next page (the keyset cursor).
    page_value(
        &browser,
        "window.scrollTo(0, document.body.scrollHeight); return true",
    )
    .await;
    until_page(
        &browser,
        "the second page",
        "return document.querySelectorAll('#events li').length",
        json!(200),
    )
    .await;

    // Dragging across the histogram zooms into that span, and the URL says so.
    page_value(&browser, "window.scrollTo(0, 0); return true").await;
    let chart = browser
        .find(Locator::Css("#histogram"))
        .await
        .expect("the histogram");
    let drag = MouseActions::new("mouse".to_owned())
        .then(PointerAction::MoveToElement {
            element: chart.clone(),
            duration: None,
            x: -150.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveToElement {
            element: chart,
            duration: Some(Duration::from_millis(200)),
            x: 250.0,
            y: 0.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    browser
        .perform_actions(drag)
        .await
        .expect("drag across the histogram");
    until_page(
        &browser,
        "the zoomed range",
        "return new URLSearchParams(location.search).get('range')",
        json!("custom"),
    )
    .await;
    let zoomed = page_value(
        &browser,
        "const p = new URLSearchParams(location.search); \
         return (new Date(p.get('to')) - new Date(p.get('from'))) / 60000",
    )
    .await
    .as_f64()
    .expect("minutes");
    assert!(
        zoomed > 1.0 && zoomed < 60.0,
        "a span inside the hour: {zoomed} min"
    );

    // Live, scrolled away from the newest events: new ones wait behind a button
    // instead of moving the page; the button shows them.
    browser
        .goto(&format!("{}/gateway/ui/?range=1h&live=1", gateway.base))
        .await
        .expect("open live");
    until_page(
        &browser,
        "the live overview",
        "return document.getElementById('live-status').dataset.state === 'live' \
           && document.querySelectorAll('#events li').length === 100",
        json!(true),
    )
    .await;
    page_value(&browser, "window.scrollTo(0, 600); return true").await;
    let held = format!("held while scrolled {}", uuid::Uuid::new_v4().simple());
    ingest(
        &producer,
        json!({"level": "WARN", "source": format!("held-{source}"), "message": held}),
    )
    .await;
    until_page(
        &browser,
        "the new-events button",
        "const b = document.getElementById('new-events'); return b.hidden ? '' : b.textContent",
        json!("1 new event: show"),
    )
    .await;
    assert!(
        !messages_shown(&browser).await.contains(&held),
        "held back while scrolled"
    );
    click(&browser, Locator::Css("#new-events"), "the button").await;
    until_page(
        &browser,
        "the held event at the top",
        "return document.querySelector('#events li .text').textContent",
        json!(held),
    )
    .await;
    browser
        .goto(&format!("{}/gateway/ui/?range=1h&q={marker}", gateway.base))
        .await
        .expect("open the explorer");
    until_page(
        &browser,
        "the search results",
        "return document.querySelectorAll('#events li').length",
        json!(6),
    )
    .await;
    assert_eq!(
        page_value(
            &browser,
            "return document.getElementById('summary').textContent"
        )
        .await,
        json!("6 events")
    );
    screenshot(&browser, "explorer-search.png").await;

    // A level filter changes the results, and the URL keeps it.
    click(
        &browser,
        Locator::Css("#levels input[value=ERROR]"),
        "the ERROR toggle",
    )
    .await;
    until_page(
        &browser,
        "only the ERROR events",
        "return [...document.querySelectorAll('#events li .level')].map(e => e.textContent).join()",
        json!("ERROR,ERROR"),
    )
    .await;
    let url = browser.current_url().await.expect("url");
    assert!(url.as_str().contains("level=ERROR"), "{url}");

    // The live tail: a new event appears without a reload.
    click(&browser, Locator::Css("#live"), "the Live button").await;
    until_page(
        &browser,
        "the tail to be live",
        "return document.getElementById('live-status').dataset.state",
        json!("live"),
    )
    .await;
    let sent = Instant::now();
    ingest(
        &producer,
        json!({"level": "ERROR", "source": source, "message": format!("live {marker} one")}),
    )
    .await;
    let live_one = &format!("live {marker} one");
    let page = &browser;
    eventually(
        "the live event to appear",
        Duration::from_secs(30),
        || async move { messages_shown(page).await.contains(live_one).then_some(()) },
    )
    .await;
    println!(
        "live tail: ingest answered to row shown in {} ms",
        sent.elapsed().as_millis()
    );

    // Drop the connection: the gateway stops (its streams end), an event is stored
    // meanwhile, and a new gateway on the same port serves the page's reconnect,
    // which resumes from the last id it saw.
    gateway.stop().await;
    until_page(
        &browser,
        "the tail to notice the drop",
        "return ['retrying', 'connecting'].includes(document.getElementById('live-status').dataset.state)",
        json!(true),
    )
    .await;
    let during = &format!("during outage {marker}");
    ingest(
        &producer,
        json!({"level": "ERROR", "source": source, "message": during}),
    )
    .await;
    let stored_source = &source;
    eventually(
        "the outage event to be stored",
        Duration::from_secs(60),
        || async move { (rows_for_source(stored_source).len() == 8).then_some(()) },
    )
    .await;
    let gateway = gateway_on(port, &topic, &group).await;
    eventually(
        "the tail to resume",
        Duration::from_secs(30),
        || async move { messages_shown(page).await.contains(during).then_some(()) },
    )
    .await;
    // Anything sent twice would arrive next: give it the time to.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shown = messages_shown(&browser).await;
    assert_eq!(
        shown.len(),
        4,
        "two ERRORs found, one live, one resumed: {shown:?}"
    );
    assert_eq!(
        page_value(
            &browser,
            "return document.getElementById('live-status').dataset.duplicates"
        )
        .await,
        json!("0"),
        "the tail sent no event twice"
    );
    screenshot(&browser, "explorer-live.png").await;

    // An event opens from the keyboard (Enter on the focused row; a click does the
    // same): its fields and its metadata as JSON.
    let row = browser
        .find(Locator::XPath(&format!(
            "//ol[@id='events']/li[span[@class='text' and text()='checkout {marker} step 5']]"
        )))
        .await
        .expect("the correlated event's row");
    row.send_keys(&Key::Enter.to_string())
        .await
        .expect("Enter on the event's row");
    until_page(
        &browser,
        "the details dialog",
        "return document.getElementById('details').open",
        json!(true),
    )
    .await;
    let metadata = page_value(
        &browser,
        "return document.getElementById('details-metadata').textContent",
    )
    .await;
    let metadata: Value =
        serde_json::from_str(metadata.as_str().expect("text")).expect("pretty JSON");
    assert_eq!(metadata, json!({"duration": 17.5, "region": "eu-west-1"}));
    screenshot(&browser, "explorer-details.png").await;

    // Its correlation id is a link that filters by it.
    click(
        &browser,
        Locator::LinkText(&correlation),
        "the correlation id link",
    )
    .await;
    until_page(
        &browser,
        "only the correlated event",
        ROW_MESSAGES,
        json!([format!("checkout {marker} step 5")]),
    )
    .await;
    let url = browser.current_url().await.expect("url");
    assert!(
        url.as_str().contains(&format!("cid={correlation}")),
        "{url}"
    );

    // A link reproduces the view: the same URL in a fresh load shows the same rows.
    browser.goto(url.as_str()).await.expect("reload the link");
    until_page(
        &browser,
        "the linked view",
        ROW_MESSAGES,
        json!([format!("checkout {marker} step 5")]),
    )
    .await;

    // No results: a clear message, not an empty page.
    browser
        .goto(&format!(
            "{}/gateway/ui/?range=15m&q=nothing{marker}",
            gateway.base
        ))
        .await
        .expect("open an empty search");
    until_page(
        &browser,
        "the empty state",
        "return document.getElementById('message').textContent.startsWith('No events match')",
        json!(true),
    )
    .await;

    // Readable at a phone's width: nothing wider than the screen.
    browser
        .set_window_size(390, 844)
        .await
        .expect("phone width");
    browser
        .goto(&format!("{}/gateway/ui/?range=1h&q={marker}", gateway.base))
        .await
        .expect("open at phone width");
    until_page(
        &browser,
        "the results at phone width",
        "return document.querySelectorAll('#events li').length",
        json!(8),
    )
    .await;
    assert_eq!(
        page_value(
            &browser,
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        .await,
        json!(true),
        "no horizontal scrolling at 390 px"
    );
    screenshot(&browser, "explorer-phone.png").await;

    // The gateway down: the page says so.
    gateway.stop().await;
    click(&browser, Locator::Css("#apply"), "the Search button").await;
    until_page(
        &browser,
        "the gateway-down state",
        "return document.getElementById('message').textContent",
        json!("The gateway cannot be reached. Is it running?"),
    )
    .await;

    browser.close().await.expect("close the browser");
}
