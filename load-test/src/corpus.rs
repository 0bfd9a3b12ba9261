//! Log lines shaped like the ones real systems write, for benchmarks of the storage
//! layouts: synthetic word soup compresses and filters far better than real lines do,
//! and flatters every layout.
//!
//! Sixteen systems, Zipf-skewed (the web server writes a third of all lines), each with
//! the formats it really uses (nginx and HAProxy access lines, sshd, PostgreSQL, a
//! Spring service's exceptions, kubelet, Kafka, Redis, Elasticsearch slow logs,
//! `key=value` gateways…). Levels follow from the line (a 5xx is an ERROR), so they are
//! skewed the way real ones are. Values are drawn from skewed pools (a few client IPs,
//! routes and users do most of the traffic) or are random where real ones are (request
//! UUIDs, trace ids, byte counts, durations).

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::Rng;
use std::fmt::Write;

/// One generated line.
pub struct Line {
    pub source: &'static str,
    pub level: &'static str,
    pub message: String,
    /// For the systems that propagate one.
    pub trace_id: Option<String>,
}

/// The systems and their share of the lines (relative weights).
const SYSTEMS: [(&str, u32); 16] = [
    ("nginx", 300),
    ("checkout", 120),
    ("payments", 80),
    ("api-gateway", 70),
    ("postgres", 60),
    ("haproxy", 50),
    ("kubelet", 45),
    ("auth", 40),
    ("kafka", 35),
    ("cdn", 35),
    ("search", 30),
    ("inventory", 30),
    ("redis", 25),
    ("scheduler", 20),
    ("billing", 15),
    ("mailer", 10),
];

const ROUTES: [&str; 16] = [
    "/api/v1/products",
    "/api/v1/products/{id}",
    "/api/v1/cart",
    "/api/v1/cart/items/{id}",
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/users/{id}",
    "/api/v1/users/{id}/addresses",
    "/api/v1/search",
    "/api/v2/recommendations/{id}",
    "/static/js/app.{hex}.js",
    "/static/css/main.{hex}.css",
    "/images/products/{id}.webp",
    "/healthz",
    "/metrics",
    "/login",
];

const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
    "kube-probe/1.31",
    "curl/8.5.0",
    "okhttp/4.12.0",
];

const NAMES: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "trent",
];

const DECLINES: [(&str, &str); 4] = [
    ("insufficient funds", "51"),
    ("card expired", "54"),
    ("suspected fraud", "59"),
    ("do not honour", "05"),
];

/// The generator: the systems' cumulative weights.
pub struct Corpus {
    cumulative: Vec<u32>,
}

impl Default for Corpus {
    fn default() -> Self {
        let mut sum = 0;
        let cumulative = SYSTEMS
            .iter()
            .map(|(_, w)| {
                sum += w;
                sum
            })
            .collect();
        Corpus { cumulative }
    }
}

/// An index in `0..n`, Zipf-like (rank 0 the most frequent): a few values do most of
/// the traffic.
fn skewed(rng: &mut SmallRng, n: u32) -> u32 {
    let u: f64 = rng.random::<f64>();
    // u^3 piles values near 0.
    ((u * u * u) * f64::from(n)) as u32 % n.max(1)
}

fn ip(rng: &mut SmallRng) -> String {
    let k = skewed(rng, 5_000);
    format!(
        "{}.{}.{}.{}",
        10 + k % 180,
        (k / 7) % 256,
        (k / 13) % 256,
        1 + k % 254
    )
}

fn route(rng: &mut SmallRng) -> String {
    let template = ROUTES[skewed(rng, ROUTES.len() as u32) as usize];
    template
        .replace("{id}", &skewed(rng, 100_000).to_string())
        .replace("{hex}", &format!("{:08x}", skewed(rng, 40)))
}

fn uuid(rng: &mut SmallRng) -> String {
    uuid::Uuid::from_u128(rng.random::<u128>() & !(0xf << 76) | (4 << 76)).to_string()
}

fn hex(rng: &mut SmallRng, bytes: usize) -> String {
    (0..bytes).fold(String::new(), |mut s, _| {
        let _ = write!(s, "{:02x}", rng.random::<u8>());
        s
    })
}

/// Milliseconds, log-normal around `median`.
fn millis(rng: &mut SmallRng, median: f64) -> u64 {
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (median * (normal * 0.9).exp()).round() as u64
}

fn status(rng: &mut SmallRng) -> u16 {
    match rng.random_range(0..1000) {
        0..=899 => 200,
        900..=929 => 304,
        930..=949 => 301,
        950..=979 => 404,
        980..=989 => 401,
        990..=995 => 500,
        _ => 503,
    }
}

fn level_of_status(status: u16) -> &'static str {
    match status {
        500.. => "ERROR",
        400.. => "WARN",
        _ => "INFO",
    }
}

fn name(rng: &mut SmallRng) -> &'static str {
    NAMES[skewed(rng, NAMES.len() as u32) as usize]
}

impl Corpus {
    /// A line as `source` would write it at `at`.
    pub fn line(&self, rng: &mut SmallRng, at: DateTime<Utc>) -> Line {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let pick = rng.random_range(0..total);
        let system = self.cumulative.partition_point(|&c| c <= pick);
        let source = SYSTEMS[system.min(SYSTEMS.len() - 1)].0;
        let mut trace_id = None;
        let (level, message) = match source {
            "nginx" => {
                let status = status(rng);
                let method = if rng.random_range(0..10) < 8 { "GET" } else { "POST" };
                (
                    level_of_status(status),
                    format!(
                        "{} - - [{}] \"{method} {} HTTP/1.1\" {status} {} \"-\" \"{}\"",
                        ip(rng),
                        at.format("%d/%b/%Y:%H:%M:%S +0000"),
                        route(rng),
                        rng.random_range(0..60_000),
                        AGENTS[skewed(rng, AGENTS.len() as u32) as usize]
                    ),
                )
            }
            "haproxy" => {
                let status = status(rng);
                (
                    level_of_status(status),
                    format!(
                        "{}:{} [{}] www~ app/srv{} {}/0/{}/{}/{} {status} {} - - ---- {}/{}/{}/{}/0 0/0 \"GET {} HTTP/1.1\"",
                        ip(rng),
                        rng.random_range(1024..65535),
                        at.format("%d/%b/%Y:%H:%M:%S%.3f"),
                        rng.random_range(1..9),
                        rng.random_range(0..5),
                        rng.random_range(0..3),
                        millis(rng, 20.0),
                        millis(rng, 25.0),
                        rng.random_range(200..90_000),
                        rng.random_range(100..400),
                        rng.random_range(100..400),
                        rng.random_range(1..40),
                        rng.random_range(0..10),
                        route(rng)
                    ),
                )
            }
            "api-gateway" => {
                let status = status(rng);
                let trace = hex(rng, 16);
                let line = format!(
                    "method=GET path={} status={status} duration_ms={} client={} request_id={} trace_id={trace}",
                    route(rng),
                    millis(rng, 35.0),
                    ip(rng),
                    uuid(rng)
                );
                trace_id = Some(trace);
                (level_of_status(status), line)
            }
            "checkout" => {
                let order = 4_000_000 + rng.random_range(0..900_000);
                trace_id = Some(hex(rng, 16));
                match rng.random_range(0..100) {
                    0..=54 => ("INFO", format!(
                        "Completed GET {} in {} ms, status 200", route(rng), millis(rng, 40.0))),
                    55..=84 => ("INFO", format!(
                        "Order {order} placed by user {} total={}.{:02} EUR items={}",
                        name(rng), rng.random_range(5..400), rng.random_range(0..100), rng.random_range(1..8))),
                    85..=94 => ("WARN", format!(
                        "Slow response from inventory-service: {} ms (threshold 500 ms) for order {order}",
                        500 + millis(rng, 300.0))),
                    _ => ("ERROR", format!(
                        "Failed to reserve stock for order {order}: java.net.SocketTimeoutException: Read timed out \
                         at com.acme.checkout.InventoryClient.reserve(InventoryClient.java:{})",
                        80 + rng.random_range(0..40))),
                }
            }
            "payments" => {
                let payment = uuid(rng);
                match rng.random_range(0..100) {
                    0..=79 => ("INFO", format!(
                        "payment {payment} authorised amount={}.{:02} currency=EUR card=****{:04} in {}ms",
                        rng.random_range(5..400), rng.random_range(0..100), rng.random_range(0..10_000), millis(rng, 180.0))),
                    80..=94 => {
                        let (reason, code) = DECLINES[skewed(rng, DECLINES.len() as u32) as usize];
                        ("WARN", format!("payment {payment} declined: {reason} (code={code})"))
                    }
                    _ => ("ERROR", format!(
                        "payment provider timeout after {}ms for {payment}, retrying (attempt {}/3)",
                        3000 + millis(rng, 500.0), rng.random_range(1..4))),
                }
            }
            "postgres" => match rng.random_range(0..100) {
                0..=69 => ("INFO", format!(
                    "LOG:  duration: {}.{:03} ms  execute <unnamed>: SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20",
                    millis(rng, 3.0), rng.random_range(0..1000))),
                70..=84 => ("INFO", format!(
                    "LOG:  checkpoint complete: wrote {} buffers ({}.{}%); 0 WAL file(s) added, 0 removed, {} recycled; write={}.{:03} s",
                    rng.random_range(100..9000), rng.random_range(0..30), rng.random_range(0..10), rng.random_range(0..5),
                    rng.random_range(0..30), rng.random_range(0..1000))),
                85..=96 => ("ERROR", format!(
                    "ERROR:  duplicate key value violates unique constraint \"orders_pkey\" DETAIL:  Key (id)=({}) already exists.",
                    4_000_000 + rng.random_range(0..900_000))),
                _ => ("FATAL", format!("FATAL:  password authentication failed for user \"{}\"", name(rng))),
            },
            "kubelet" => {
                let pod = format!("{}-{}-{}", ["checkout", "payments", "search", "inventory"][rng.random_range(0..4)],
                    hex(rng, 4), hex(rng, 2));
                match rng.random_range(0..100) {
                    0..=59 => ("INFO", format!("Started container app in pod {pod} (namespace shop)")),
                    60..=89 => ("WARN", format!(
                        "Readiness probe failed for pod {pod}: Get \"http://10.244.{}.{}:8080/ready\": context deadline exceeded",
                        rng.random_range(0..8), rng.random_range(2..250))),
                    _ => ("ERROR", format!("Back-off restarting failed container app in pod {pod}")),
                }
            }
            "auth" => {
                let (user, from, port) = (name(rng), ip(rng), rng.random_range(1024..65535));
                match rng.random_range(0..100) {
                    0..=49 => ("INFO", format!(
                        "Accepted publickey for {user} from {from} port {port} ssh2: ED25519 SHA256:{}", hex(rng, 20))),
                    50..=79 => ("INFO", format!(
                        "pam_unix(sshd:session): session opened for user {user}(uid={}) by (uid=0)", 1000 + skewed(rng, 50))),
                    _ => ("WARN", format!("Failed password for invalid user {user} from {from} port {port} ssh2")),
                }
            }
            "kafka" => match rng.random_range(0..100) {
                0..=69 => ("INFO", format!(
                    "[ProducerStateManager partition=log-events-{}] Wrote producer snapshot at offset {} with {} producer ids in {} ms.",
                    rng.random_range(0..6), rng.random_range(0..50_000_000), rng.random_range(0..20), millis(rng, 2.0))),
                _ => ("INFO", format!(
                    "[GroupCoordinator 1]: Preparing to rebalance group log-consumer-group in state PreparingRebalance with old generation {} (__consumer_offsets-{}) (reason: Adding new member consumer-{}-{})",
                    rng.random_range(1..400), rng.random_range(0..50), rng.random_range(1..9), uuid(rng))),
            },
            "cdn" => {
                let hit = if rng.random_range(0..10) < 8 { "HIT" } else { "MISS" };
                ("INFO", format!(
                    "{} {hit} {} {} {}ms edge=fra{} cache-status={}",
                    ip(rng), route(rng), rng.random_range(200..500_000), millis(rng, 8.0), rng.random_range(1..7),
                    hit.to_lowercase()))
            }
            "search" => match rng.random_range(0..100) {
                0..=84 => ("INFO", format!(
                    "[search-{}] [products][{}] took[{}ms], took_millis[{}], total_hits[{} hits], search_type[QUERY_THEN_FETCH], total_shards[5]",
                    rng.random_range(0..3), rng.random_range(0..5), millis(rng, 60.0), millis(rng, 60.0), rng.random_range(0..5000))),
                _ => ("WARN", format!(
                    "[gc][{}] overhead, spent [{}ms] collecting in the last [1s]", rng.random_range(1000..99_999), millis(rng, 300.0))),
            },
            "inventory" => {
                let sku = skewed(rng, 20_000);
                match rng.random_range(0..100) {
                    0..=84 => ("INFO", format!(
                        "Reserved {} units of SKU-{sku:05} for order {}", rng.random_range(1..5), 4_000_000 + rng.random_range(0..900_000))),
                    _ => ("WARN", format!("Low stock for SKU-{sku:05}: {} left (reorder level 20)", rng.random_range(0..20))),
                }
            }
            "redis" => {
                let pid = 1 + skewed(rng, 3);
                match rng.random_range(0..100) {
                    0..=79 => ("INFO", format!(
                        "{pid}:M {} * {} changes in 60 seconds. Saving...", at.format("%d %b %Y %H:%M:%S%.3f"), rng.random_range(1000..100_000))),
                    _ => ("WARN", format!(
                        "{pid}:M {} # Client id={} addr={}:{} laddr=10.0.3.7:6379 closed for overcoming of output buffer limits.",
                        at.format("%d %b %Y %H:%M:%S%.3f"), rng.random_range(1..1_000_000), ip(rng), rng.random_range(1024..65535))),
                }
            }
            "scheduler" => {
                let job = ["cleanup-sessions", "reindex-products", "export-orders", "rotate-keys"][skewed(rng, 4) as usize];
                match rng.random_range(0..100) {
                    0..=89 => ("INFO", format!(
                        "Job {job} finished in {}.{}s, processed {} records", rng.random_range(0..300), rng.random_range(0..10), rng.random_range(0..200_000))),
                    _ => ("ERROR", format!(
                        "Job {job} failed after {}s: java.io.IOException: Connection reset by peer", rng.random_range(1..300))),
                }
            }
            "billing" => ("INFO", format!(
                "Invoice INV-2026-{:06} generated for customer C{:06} amount={}.{:02} EUR due=2026-12-{:02}",
                rng.random_range(0..999_999), skewed(rng, 200_000), rng.random_range(5..5000), rng.random_range(0..100), rng.random_range(1..29))),
            _ => match rng.random_range(0..100) {
                0..=89 => ("INFO", format!(
                    "Sent email template=order-confirmation to={}@example.com message_id=<{}@mail.example.com> in {}ms",
                    name(rng), hex(rng, 12), millis(rng, 250.0))),
                _ => ("ERROR", format!(
                    "SMTP 451 4.7.1 Temporary failure from mx{}.example.net for {}@example.org, will retry",
                    rng.random_range(1..4), name(rng))),
            },
        };
        Line {
            source,
            level,
            message,
            trace_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lines_are_skewed_by_system_and_level_and_look_real() {
        let corpus = Corpus::default();
        let mut rng = SmallRng::seed_from_u64(7);
        let at = Utc::now();
        let lines: Vec<Line> = (0..20_000).map(|_| corpus.line(&mut rng, at)).collect();
        let share =
            |f: &dyn Fn(&Line) -> bool| lines.iter().filter(|l| f(l)).count() as f64 / 20_000.0;
        let nginx = share(&|l| l.source == "nginx");
        assert!((0.25..0.38).contains(&nginx), "{nginx}");
        assert!(share(&|l| l.source == "mailer") < 0.02);
        let info = share(&|l| l.level == "INFO");
        assert!((0.75..0.95).contains(&info), "{info}");
        assert!(share(&|l| l.level == "ERROR") > 0.005);
        let systems: std::collections::HashSet<_> = lines.iter().map(|l| l.source).collect();
        assert_eq!(systems.len(), 16);
        let mean = lines.iter().map(|l| l.message.len()).sum::<usize>() as f64 / 20_000.0;
        assert!((90.0..220.0).contains(&mean), "mean length {mean}");
    }
}
