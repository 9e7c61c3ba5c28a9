//! The HTML report in a real browser: headless Chromium driven by ChromeDriver over
//! WebDriver (plain HTTP). The pointer moves onto a word, the page draws that word's
//! heatmap over its image, hottest where the word's map is; a screenshot of it is kept
//! in the target folder. Without Chromium and ChromeDriver (Debian's chromium and
//! chromium-driver, which .ci/run installs) the test says so and passes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first of `names` found on PATH (or as given, when absolute).
fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        let n = Path::new(n);
        if n.is_absolute() {
            return n.is_file().then(|| n.to_path_buf());
        }
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver { child, port };
        let start = Instant::now();
        while driver
            .try_call("GET", "/status", None)
            .map_or(true, |v| v["value"]["ready"] != true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ChromeDriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self
            .try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(v["value"]["error"].is_null(), "{method} {path}: {v}");
        v["value"].clone()
    }

    /// One HTTP/1.1 request, the connection closed after it.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        // Read until the body is complete: the driver may keep the connection open.
        let mut raw = Vec::new();
        let mut buf = [0u8; 1 << 16];
        loop {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            raw.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&raw) {
                break;
            }
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no HTTP header")?;
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let mut payload = raw[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            payload = dechunk(&payload);
        }
        serde_json::from_slice(&payload)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&payload)))
    }
}

/// Whether `raw` holds a whole response: headers, then Content-Length bytes or the
/// last chunk.
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let body = &raw[split + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (value(c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The page's state: which word is shown, and over the first image's canvas how many
/// pixels are coloured and where the most opaque one is (as shares of the width and
/// height).
const STATE: &str = "const c = document.querySelector('#item-0 canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let coloured = 0, best = -1, at = 0;
for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) coloured++; if (d[i] > best) { best = d[i]; at = (i - 3) / 4; } }
return { shown: document.body.dataset.shown, coloured: coloured,
         x: ((at % c.width) + 0.5) / c.width, y: (Math.floor(at / c.width) + 0.5) / c.height };";

#[test]
fn hovering_a_word_draws_its_heatmap() {
    let (Some(chromium), Some(chromedriver)) = (
        find(&["chromium", "chromium-browser", "google-chrome"]),
        find(&["chromedriver"]),
    ) else {
        eprintln!(
            "skipped: the browser test needs Chromium and ChromeDriver on PATH \
             (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
        );
        return;
    };
    let out = common::tmp("report");
    let image = repo().join("datasets/sample/images/test/000011.png");
    let run = Command::new(env!("CARGO_BIN_EXE_captioner"))
        .arg("attend")
        .arg(&image)
        .args([
            "--model".as_ref(),
            repo().join("weights/shapes-tiny").as_os_str(),
        ])
        .args([
            "--prompt",
            "a picture of",
            "--strip-prompt",
            "--beams",
            "1",
            "-q",
        ])
        .args(["--out".as_ref(), out.as_os_str()])
        .args(["--report".as_ref(), out.join("report.html").as_os_str()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let maps: Value =
        serde_json::from_slice(&std::fs::read(out.join("000011.json")).unwrap()).unwrap();
    let words = maps["words"].as_array().unwrap();
    // The caption's most focused word: its map's peak is well inside one patch.
    let peak = |w: &Value| -> (f64, usize, usize) {
        let rows = w["weights"].as_array().unwrap();
        let mut best = (f64::MIN, 0, 0);
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.as_array().unwrap().iter().enumerate() {
                let v = v.as_f64().unwrap();
                if v > best.0 {
                    best = (v, r, c);
                }
            }
        }
        best
    };
    let (index, (_, row, col)) = words
        .iter()
        .map(peak)
        .enumerate()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .unwrap();

    let driver = Driver::start(&chromedriver);
    let session = driver.call(
        "POST",
        "/session",
        Some(
            json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,700"]
            }}}}),
        ),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    let at = |p: &str| format!("/session/{id}{p}");
    let url = format!("file://{}", out.join("report.html").display());
    driver.call("POST", &at("/url"), Some(json!({ "url": url })));
    let state = || {
        driver.call(
            "POST",
            &at("/execute/sync"),
            Some(json!({"script": STATE, "args": []})),
        )
    };
    let screenshot = || {
        base64_decode(
            driver
                .call("GET", &at("/screenshot"), None)
                .as_str()
                .unwrap(),
        )
    };

    let before = state();
    assert_eq!(before["shown"], "");
    let plain = screenshot();
    let word = driver.call(
        "POST",
        &at("/element"),
        Some(json!({"using": "css selector", "value": format!("#item-0 .word[data-word=\"{index}\"]")})),
    );
    let pointer = |origin: Value| {
        json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0}]}]})
    };
    driver.call(
        "POST",
        &at("/actions"),
        Some(pointer(json!({ ELEMENT: word[ELEMENT] }))),
    );
    let shown = state();
    assert_eq!(shown["shown"], format!("0:{index}"), "{shown}");
    assert!(shown["coloured"].as_u64().unwrap() > 1000, "{shown}");
    // The most opaque pixel lies in the patch the word's map peaks on (8 × 8 grid).
    let (x, y) = (shown["x"].as_f64().unwrap(), shown["y"].as_f64().unwrap());
    assert!(
        (x * 8.0 - (col as f64 + 0.5)).abs() <= 1.0 && (y * 8.0 - (row as f64 + 0.5)).abs() <= 1.0,
        "peak at ({x:.2}, {y:.2}), the map's at patch ({row}, {col})"
    );
    let hovered = screenshot();
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-hover.png");
    std::fs::write(&artifact, &hovered).unwrap();
    eprintln!("screenshot of the hovered word: {}", artifact.display());
    // The screenshot shows it: many pixels changed from the page before the hover.
    let (a, b) = (
        image::load_from_memory(&plain).unwrap().to_rgb8(),
        image::load_from_memory(&hovered).unwrap().to_rgb8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let changed = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
    assert!(changed > 1000, "{changed} pixels changed");

    // Moving away takes the heatmap off.
    driver.call("POST", &at("/actions"), Some(pointer(json!("viewport"))));
    assert_eq!(state()["shown"], "");
    driver.call("DELETE", &format!("/session/{id}"), None);
}
