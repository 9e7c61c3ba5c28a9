//! Hub ids as `--model`, without a network: a fake cache in the exact layout
//! `huggingface_hub` and `hf-hub` write, and a fake hub on a loopback port that answers
//! as the real one does (the repository API, then `resolve/` with ETag, X-Repo-Commit
//! and Content-Range), so that `hf-hub` itself writes the cache.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use captioner::hub::{resolve_model_with, HubId, HubSettings, DEFAULT_MODEL};
use captioner::{CaptionOptions, Captioner};
use serde_json::Value;

const REPO: &str = "tester/tiny-blip";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a")
}

/// A fresh, empty directory for one test.
fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("captioner-hub-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tiny-a's files under the names the hub gives them: transformers 5 saved the image
/// processor nested in processor_config.json; the hub's BLIP repos have it flat in
/// preprocessor_config.json.
fn hub_files() -> Vec<(String, Vec<u8>)> {
    let dir = fixture();
    let mut files: Vec<(String, Vec<u8>)> = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|name| (name.to_string(), std::fs::read(dir.join(name)).unwrap()))
    .collect();
    let nested: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("processor_config.json")).unwrap())
            .unwrap();
    let flat = serde_json::to_vec_pretty(&nested["image_processor"]).unwrap();
    files.push(("preprocessor_config.json".into(), flat));
    files
}

/// FNV-1a, standing in for the hub's ETag (a content hash).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Writes `files` into `cache` as the hub's clients do: contents in `blobs/<etag>`,
/// `snapshots/<commit>/<name>` linking to them, `refs/<revision>` holding the commit.
fn cache_snapshot(cache: &Path, revision: &str, commit: &str, files: &[(String, Vec<u8>)]) {
    let repo = cache.join(format!("models--{}", REPO.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for (name, bytes) in files {
        let tag = etag(bytes);
        std::fs::write(repo.join("blobs").join(&tag), bytes).unwrap();
        let link = snapshot.join(name);
        #[cfg(unix)]
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&tag), &link).unwrap();
        #[cfg(not(unix))]
        std::fs::write(&link, bytes).unwrap();
    }
    let refs = repo.join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join(revision), commit).unwrap();
}

fn settings(cache: &Path, offline: bool, endpoint: &str) -> HubSettings {
    HubSettings {
        cache_dir: cache.to_path_buf(),
        offline,
        endpoint: endpoint.to_string(),
        progress: false,
    }
}

/// An address where nothing listens: any connection is refused at once.
fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// transformers' captions of the fixture images (3 beams, "a picture of").
fn assert_captions_match_transformers(dir: &Path) {
    let model = Captioner::load(dir, &Device::Cpu).expect("the resolved checkpoint loads");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let images: Vec<_> = expected["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let path = fixture().join("../images").join(n.as_str().unwrap());
            datasets::load_image(&path, 1 << 30).unwrap()
        })
        .collect();
    let opts = CaptionOptions {
        num_beams: 3,
        prompt: Some("a picture of".into()),
        ..Default::default()
    };
    let case = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "beam3_blip_eval")
        .unwrap();
    for (i, caps) in model.caption(&images, &opts).unwrap().iter().enumerate() {
        assert_eq!(
            caps[0].text,
            case["texts"][i].as_str().unwrap(),
            "image {i}"
        );
    }
}

#[test]
fn cached_id_resolves_to_its_snapshot_without_network() {
    let cache = tempdir("cached");
    cache_snapshot(&cache, "main", COMMIT, &hub_files());
    let snapshot = cache
        .join("models--tester--tiny-blip/snapshots")
        .join(COMMIT);
    // Online, with a hub that refuses every connection: the cache answers first.
    for offline in [true, false] {
        let dir = resolve_model_with(REPO, &settings(&cache, offline, &closed_endpoint()))
            .unwrap_or_else(|e| panic!("offline={offline}: {e}"));
        assert_eq!(dir, snapshot);
    }
    assert_captions_match_transformers(&snapshot);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn revision_after_at_sign_picks_its_snapshot() {
    let cache = tempdir("revision");
    let files = hub_files();
    cache_snapshot(&cache, "main", COMMIT, &files);
    cache_snapshot(&cache, "v1.0", OTHER_COMMIT, &files);
    let repo = cache.join("models--tester--tiny-blip/snapshots");
    let s = settings(&cache, true, &closed_endpoint());
    assert_eq!(
        resolve_model_with(&format!("{REPO}@v1.0"), &s).unwrap(),
        repo.join(OTHER_COMMIT)
    );
    assert_eq!(
        resolve_model_with(&format!("{REPO}@main"), &s).unwrap(),
        repo.join(COMMIT)
    );
    // A commit hash needs no ref.
    std::fs::remove_file(cache.join("models--tester--tiny-blip/refs/v1.0")).unwrap();
    assert_eq!(
        resolve_model_with(&format!("{REPO}@{OTHER_COMMIT}"), &s).unwrap(),
        repo.join(OTHER_COMMIT)
    );
    let err = resolve_model_with(&format!("{REPO}@v1.0"), &s)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no snapshot for revision v1.0") && err.contains("--revision v1.0"),
        "{err}"
    );
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn missing_file_offline_says_what_to_download_and_where() {
    let cache = tempdir("offline");
    let files: Vec<_> = hub_files()
        .into_iter()
        .filter(|(name, _)| name != "tokenizer.json")
        .collect();
    cache_snapshot(&cache, "main", COMMIT, &files);
    let err = resolve_model_with(REPO, &settings(&cache, true, "https://huggingface.co"))
        .unwrap_err()
        .to_string();
    let searched = cache
        .join("models--tester--tiny-blip/snapshots")
        .join(COMMIT);
    for want in [
        "HF_HUB_OFFLINE",
        &format!("{} (missing: tokenizer.json)", searched.display()),
        "https://huggingface.co/tester/tiny-blip",
        "hf download tester/tiny-blip config.json model.safetensors tokenizer.json \
         tokenizer_config.json special_tokens_map.json preprocessor_config.json \
         --local-dir weights/tiny-blip",
        "--model weights/tiny-blip",
        "pytorch_model.bin is not",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }

    // Nothing cached at all: the repository directory is what was searched.
    let empty = tempdir("offline-empty");
    let err = resolve_model_with(REPO, &settings(&empty, true, "https://huggingface.co"))
        .unwrap_err()
        .to_string();
    let repo_dir = empty.join("models--tester--tiny-blip");
    assert!(
        err.contains(&format!(
            "{} (no snapshot for revision main)",
            repo_dir.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&cache).ok();
    std::fs::remove_dir_all(&empty).ok();
}

#[test]
fn sharded_weights_need_every_shard() {
    let cache = tempdir("sharded");
    let mut files = hub_files();
    let weights = files
        .iter()
        .position(|(n, _)| n == "model.safetensors")
        .unwrap();
    let shard = "model-00001-of-00001.safetensors";
    files[weights].0 = shard.into();
    let tensors =
        safetensors::SafeTensors::deserialize(&files[weights].1).expect("fixture weights parse");
    let map: serde_json::Map<String, Value> = tensors
        .names()
        .into_iter()
        .map(|n| (n.to_string(), Value::from(shard)))
        .collect();
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    files.push((
        "model.safetensors.index.json".into(),
        serde_json::to_vec(&index).unwrap(),
    ));
    let s = settings(&cache, true, "https://huggingface.co");

    // The shard is missing: the error lists the index and the shard to fetch.
    let without: Vec<_> = files.iter().filter(|(n, _)| n != shard).cloned().collect();
    cache_snapshot(&cache, "main", COMMIT, &without);
    let err = resolve_model_with(REPO, &s).unwrap_err().to_string();
    assert!(
        err.contains(&format!("(missing: {shard})"))
            && err.contains(&format!("config.json model.safetensors.index.json {shard}")),
        "{err}"
    );

    std::fs::remove_dir_all(&cache).unwrap();
    cache_snapshot(&cache, "main", COMMIT, &files);
    let dir = resolve_model_with(REPO, &s).unwrap();
    assert_captions_match_transformers(&dir);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn directories_pass_through_and_other_specs_are_named() {
    let s = settings(&tempdir("plain"), true, &closed_endpoint());
    let dir = fixture();
    assert_eq!(resolve_model_with(dir.to_str().unwrap(), &s).unwrap(), dir);
    assert_captions_match_transformers(&resolve_model_with(dir.to_str().unwrap(), &s).unwrap());

    for spec in [
        "no/such/checkpoint",
        "./missing-dir",
        "/no-such-dir/x",
        "owner--x/name",
        "owner/name@",
        "just-a-name",
    ] {
        let err = resolve_model_with(spec, &s).unwrap_err().to_string();
        assert!(
            err.contains(spec) && err.contains("not a checkpoint directory or hub id"),
            "{spec}: {err}"
        );
    }
    let file = dir.join("config.json");
    let err = resolve_model_with(file.to_str().unwrap(), &s)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a file, not a checkpoint directory"),
        "{err}"
    );
    std::fs::remove_dir_all(&s.cache_dir).ok();
}

#[test]
fn hub_ids_parse_as_the_hub_names_repositories() {
    let id = HubId::parse(DEFAULT_MODEL).unwrap();
    assert_eq!(id.repo, "Salesforce/blip-image-captioning-base");
    assert_eq!(id.revision, "main");
    assert_eq!(id.name(), "blip-image-captioning-base");
    assert_eq!(
        id.cache_dir(Path::new("cache")),
        Path::new("cache/models--Salesforce--blip-image-captioning-base")
    );
    let id = HubId::parse("a/b@refs/pr/1").unwrap();
    assert_eq!(
        (id.repo.as_str(), id.revision.as_str()),
        ("a/b", "refs/pr/1")
    );
    for bad in [
        "a", "a/b/c", "/a/b", "a/", "a/b@../x", "a/.b", "a/b-", "a b/c",
    ] {
        assert_eq!(HubId::parse(bad), None, "{bad}");
    }
}

#[test]
fn settings_follow_the_hub_environment_variables() {
    let from = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    };
    let home = [("HOME", "/home/u")];
    let s = from(&home);
    assert_eq!(s.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
    assert_eq!(s.endpoint, "https://huggingface.co");
    assert!(!s.offline);
    let s = from(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
    assert_eq!(s.cache_dir, Path::new("/xdg/huggingface/hub"));
    let s = from(&[("HOME", "/home/u"), ("HF_HOME", "/hf")]);
    assert_eq!(s.cache_dir, Path::new("/hf/hub"));
    let s = from(&[
        ("HF_HOME", "/hf"),
        ("HF_HUB_CACHE", "/hubcache"),
        ("HF_ENDPOINT", "https://mirror.example/"),
        ("HF_HUB_OFFLINE", "1"),
    ]);
    assert_eq!(s.cache_dir, Path::new("/hubcache"));
    assert_eq!(s.endpoint, "https://mirror.example");
    assert!(s.offline);
    for (value, offline) in [("TRUE", true), ("yes", true), ("0", false), ("", false)] {
        assert_eq!(
            from(&[("HOME", "/h"), ("HF_HUB_OFFLINE", value)]).offline,
            offline,
            "{value:?}"
        );
    }
}

#[test]
fn failed_download_gives_the_same_help_quickly() {
    let cache = tempdir("unreachable");
    let start = Instant::now();
    let err = resolve_model_with(REPO, &settings(&cache, false, &closed_endpoint()))
        .unwrap_err()
        .to_string();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    for want in [
        "failed",
        "hf download tester/tiny-blip config.json model.safetensors",
        "--model weights/tiny-blip",
        "no snapshot for revision main",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    std::fs::remove_dir_all(&cache).ok();
}

/// A minimal hub for `REPO` at `COMMIT` on a loopback port; counts the requests.
struct FakeHub {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

fn fake_hub(files: Vec<(String, Vec<u8>)>) -> FakeHub {
    fake_hub_with_prs(files, Vec::new())
}

/// A pull request on the fake hub: its number, title and files.
type PullRequest = (u64, &'static str, Vec<&'static str>);

fn fake_hub_with_prs(files: Vec<(String, Vec<u8>)>, prs: Vec<PullRequest>) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            serve(stream, &files, &prs);
        }
    });
    FakeHub { endpoint, requests }
}

fn serve(mut stream: TcpStream, files: &[(String, Vec<u8>)], prs: &[PullRequest]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                let spec = value.trim().trim_start_matches("bytes=");
                let (a, b) = spec.split_once('-').unwrap();
                range = Some((a.parse().unwrap(), b.parse().ok()));
            }
        }
    }
    let respond = |stream: &mut TcpStream, status: &str, headers: &[String], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).ok();
        stream.write_all(body).ok();
    };
    let api = format!("/api/models/{REPO}/revision/main");
    let resolve = format!("/{REPO}/resolve/main/");
    let json = ["Content-Type: application/json".to_string()];
    let pr_api = |n: u64| format!("/api/models/{REPO}/revision/refs%2Fpr%2F{n}");
    if path == format!("/api/models/{REPO}/discussions") {
        let listing: Vec<Value> = prs
            .iter()
            .map(|(n, title, _)| {
                serde_json::json!({"num": n, "title": title, "isPullRequest": true, "status": "open"})
            })
            .collect();
        let body = serde_json::json!({ "discussions": listing });
        respond(&mut stream, "200 OK", &json, body.to_string().as_bytes());
    } else if let Some((_, _, names)) = prs.iter().find(|(n, ..)| path == pr_api(*n)) {
        let siblings: Vec<Value> = names
            .iter()
            .map(|n| serde_json::json!({ "rfilename": n }))
            .collect();
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings });
        respond(&mut stream, "200 OK", &json, body.to_string().as_bytes());
    } else if path == api {
        let siblings: Vec<Value> = files
            .iter()
            .map(|(n, _)| serde_json::json!({ "rfilename": n }))
            .collect();
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings });
        let headers = ["Content-Type: application/json".to_string()];
        respond(&mut stream, "200 OK", &headers, body.to_string().as_bytes());
    } else if let Some((_, bytes)) = path
        .strip_prefix(&resolve)
        .and_then(|name| files.iter().find(|(n, _)| n == name))
    {
        let (start, end) = range.unwrap_or((0, None));
        let end = end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
        let headers = [
            format!("ETag: \"{}\"", etag(bytes)),
            format!("X-Repo-Commit: {COMMIT}"),
            format!("Content-Range: bytes {start}-{end}/{}", bytes.len()),
        ];
        respond(
            &mut stream,
            "206 Partial Content",
            &headers,
            &bytes[start..=end],
        );
    } else {
        respond(&mut stream, "404 Not Found", &[], b"");
    }
}

#[test]
fn download_fills_the_standard_cache_layout() {
    let cache = tempdir("download");
    let files = hub_files();
    let hub = fake_hub(files.clone());
    let s = settings(&cache, false, &hub.endpoint);
    let dir = resolve_model_with(REPO, &s).unwrap();
    let repo = cache.join("models--tester--tiny-blip");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    for (name, bytes) in &files {
        let file = dir.join(name);
        assert_eq!(&std::fs::read(&file).unwrap(), bytes, "{name}");
        let blob = repo.join("blobs").join(etag(bytes));
        assert_eq!(&std::fs::read(&blob).unwrap(), bytes, "{name} blob");
        #[cfg(unix)]
        assert_eq!(
            std::fs::canonicalize(&file).unwrap(),
            std::fs::canonicalize(&blob).unwrap(),
            "{name} links to its blob"
        );
    }
    assert_captions_match_transformers(&dir);

    // Now cached: no request reaches the hub.
    let before = hub.requests.load(Ordering::SeqCst);
    assert_eq!(resolve_model_with(REPO, &s).unwrap(), dir);
    assert_eq!(hub.requests.load(Ordering::SeqCst), before);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn download_fetches_only_what_the_snapshot_lacks() {
    let cache = tempdir("partial");
    let files = hub_files();
    let partial: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != "tokenizer.json")
        .cloned()
        .collect();
    cache_snapshot(&cache, "main", COMMIT, &partial);
    let hub = fake_hub(files);
    let dir = resolve_model_with(REPO, &settings(&cache, false, &hub.endpoint)).unwrap();
    assert!(dir.join("tokenizer.json").is_file());
    // The repository API, then tokenizer.json's metadata and contents.
    assert_eq!(hub.requests.load(Ordering::SeqCst), 3);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn pickled_only_repository_is_refused_by_name() {
    let cache = tempdir("pickled");
    let mut files: Vec<_> = hub_files()
        .into_iter()
        .filter(|(n, _)| n != "model.safetensors")
        .collect();
    files.push(("pytorch_model.bin".into(), b"not read".to_vec()));
    let hub = fake_hub(files);
    let err = resolve_model_with(REPO, &settings(&cache, false, &hub.endpoint))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pytorch_model.bin") && err.contains("never read") && err.contains(REPO),
        "{err}"
    );
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn pickled_only_repository_points_to_the_hubs_safetensors_conversion() {
    let cache = tempdir("pickled-pr");
    let mut files: Vec<_> = hub_files()
        .into_iter()
        .filter(|(n, _)| n != "model.safetensors")
        .collect();
    files.push(("pytorch_model.bin".into(), b"not read".to_vec()));
    let prs = vec![
        (2, "Update README.md", vec!["README.md"]),
        (
            3,
            "Adding `safetensors` variant of this model",
            vec!["config.json", "model.safetensors", "pytorch_model.bin"],
        ),
        // A conversion that never got its file is not offered.
        (5, "Adding safetensors", vec!["config.json"]),
    ];
    let hub = fake_hub_with_prs(files, prs);
    let err = resolve_model_with(REPO, &settings(&cache, false, &hub.endpoint))
        .unwrap_err()
        .to_string();
    let want = format!("pass --model {REPO}@refs/pr/3.");
    assert!(err.contains(&want), "{want:?} not in:\n{err}");
    assert!(
        !err.contains("refs/pr/5") && !err.contains("refs/pr/2"),
        "{err}"
    );
    assert!(
        err.contains("save_pretrained('weights/tiny-blip')"),
        "{err}"
    );
    std::fs::remove_dir_all(&cache).ok();
}
